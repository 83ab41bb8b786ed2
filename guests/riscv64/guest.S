/*
 * riscv64 migration-test guest (see ../README for the contract).
 *
 * What it does: prints 'A' once, zeroes the first byte of every 4 KiB page
 * of the test range [0x80100000, 0x86400000) (RAM base 0x80000000 + 1 MiB ..
 * + 100 MiB) in ascending order, then loops forever adding one to the first
 * byte of every page, ascending, printing 'B' after each full pass.  Nothing
 * else in the range is ever written.
 *
 * How it is loaded: qemu-system-riscv64 -machine virt -cpu sifive-u54
 * -m 128M -bios guest.elf.  The guest IS the firmware: QEMU loads the ELF
 * at the addresses it is linked at (0x80000000, the start of RAM), and the
 * hart leaves the reset vector in the machine's boot ROM (0x1000) for
 * 0x80000000 in M-mode, with a0 = hart id and a1 = the device tree's
 * address (unused here).  No OpenSBI: it would print a banner (with a
 * 'B' in it) and differs from one QEMU version to the next.
 *
 * The device tree: QEMU writes it 2 MiB aligned just below the end of RAM
 * (with -m 128M: 0x87e00000), outside the test range, so unlike aarch64's
 * guest this one has nothing to erase before printing 'A'.
 *
 * Console: the virt board's NS16550A UART at 0x10000000.  QEMU's model
 * needs no set-up; we write a byte to the transmit holding register
 * (offset 0) after waiting for THRE (bit 5 of the line status register,
 * offset 5), as real hardware would require.
 *
 * Memory: the code lives at 0x80000000, below the test range.  The program
 * uses no stack and no data: everything is kept in registers; the only
 * writes are to the UART and the counters.  In M-mode with no PMP entry
 * locked, and satp bare, every address is physical and accessible.
 * Interrupts stay disabled (mstatus.MIE is 0 at reset) and no trap is
 * expected, so no trap vector is set up.
 */

        .equ    UART_BASE,   0x10000000 /* NS16550A on the virt board */
        .equ    UART_THR,    0          /* transmit holding register */
        .equ    UART_LSR,    5          /* line status register */
        .equ    UART_THRE,   0x20       /* LSR bit: THR empty */

        .equ    RANGE_START, 0x80100000 /* RAM base + 1 MiB */
        .equ    RANGE_END,   0x86400000 /* RAM base + 100 MiB */
        .equ    PAGE_SIZE,   4096

        /* Print the byte in a0; clobbers t6.  A macro, so no stack or
         * return address is needed. */
        .macro  putc
1:      lbu     t6, UART_LSR(s0)
        andi    t6, t6, UART_THRE
        beqz    t6, 1b
        sb      a0, UART_THR(s0)
        .endm

        .text
        .globl  _start
_start:
        /* The assembler expands li into lui/addiw/slli as needed (the RAM
         * addresses have bit 31 set, which a bare lui would sign-extend):
         * no literal pool, no data. */
        li      s0, UART_BASE
        li      s1, RANGE_START
        li      s2, RANGE_END
        li      s3, PAGE_SIZE

        li      a0, 'A'
        putc

        /* Zero the first byte of every page, ascending. */
        mv      t0, s1
zero:   sb      zero, 0(t0)
        add     t0, t0, s3
        bltu    t0, s2, zero

        /* Forever: increment the first byte of every page, ascending,
         * then print 'B'. */
        li      a0, 'B'
pass:   mv      t0, s1
incr:   lbu     t1, 0(t0)
        addi    t1, t1, 1
        sb      t1, 0(t0)
        add     t0, t0, s3
        bltu    t0, s2, incr
        putc
        j       pass
