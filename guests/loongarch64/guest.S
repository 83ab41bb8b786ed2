/*
 * loongarch64 migration-test guest (see ../README for the contract).
 *
 * What it does: prints 'A' once, zeroes the first byte of every 4 KiB page
 * of the test range [32 MiB, 131 MiB) in ascending order, then loops
 * forever adding one to the first byte of every page, ascending, printing
 * 'B' after each full pass.  Nothing else in the range is ever written.
 *
 * How it is loaded: qemu-system-loongarch64 -machine virt -cpu la464
 * -m 1G -bios guest.bin.  The guest IS the firmware: QEMU puts the raw
 * image at 0x1c000000, where the CPU starts after reset, in direct
 * address mode (CRMD.DA = 1, PLV0): every address is physical, no TLB
 * or page table needed.  QEMU 7.2 refuses less than 1 GiB of RAM.
 *
 * The range starts at 32 MiB, not 1 MiB: QEMU puts its own data (the
 * device tree, at 1 MiB on 7.2) at the bottom of low RAM.  It ends well
 * inside low RAM (the first 256 MiB; the rest of RAM is at 0x90000000).
 *
 * Console: the virt board's NS16550A UART at 0x1fe001e0.  QEMU's model
 * needs no set-up; we write a byte to the transmit holding register
 * (offset 0) after waiting for THRE (bit 5 of the line status register,
 * offset 5), as real hardware would require.
 *
 * Memory: the code lives in the firmware region at 0x1c000000, outside
 * RAM.  The program uses no stack and no data: everything is kept in
 * registers; the only writes are to the UART and the counters.
 * Interrupts stay disabled (CRMD.IE is 0 at reset) and no exception is
 * expected, so no exception entry is set up.
 */

        .equ    UART_BASE,   0x1fe001e0 /* NS16550A on the virt board */
        .equ    UART_THR,    0          /* transmit holding register */
        .equ    UART_LSR,    5          /* line status register */
        .equ    UART_THRE,   0x20       /* LSR bit: THR empty */

        .equ    RANGE_START, 0x02000000 /* 32 MiB */
        .equ    RANGE_END,   0x08300000 /* 131 MiB */
        .equ    PAGE_SIZE,   4096

        /* Print the byte in $a0; clobbers $t8.  A macro, so no stack or
         * return address is needed. */
        .macro  putc
1:      ld.bu   $t8, $s0, UART_LSR
        andi    $t8, $t8, UART_THRE
        beqz    $t8, 1b
        st.b    $a0, $s0, UART_THR
        .endm

        .text
        .globl  _start
_start:
        /* li.w builds each 32-bit constant in two instructions (lu12i.w,
         * ori): no literal pool, no data. */
        li.w    $s0, UART_BASE
        li.w    $s1, RANGE_START
        li.w    $s2, RANGE_END
        li.w    $s3, PAGE_SIZE

        li.w    $a0, 'A'
        putc

        /* Zero the first byte of every page, ascending. */
        move    $t0, $s1
zero:   st.b    $zero, $t0, 0
        add.d   $t0, $t0, $s3
        bltu    $t0, $s2, zero

        /* Forever: increment the first byte of every page, ascending,
         * then print 'B'. */
        li.w    $a0, 'B'
pass:   move    $t0, $s1
incr:   ld.bu   $t1, $t0, 0
        addi.w  $t1, $t1, 1
        st.b    $t1, $t0, 0
        add.d   $t0, $t0, $s3
        bltu    $t0, $s2, incr
        putc
        b       pass
