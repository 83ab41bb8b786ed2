/*
 * aarch64 migration-test guest (see ../README for the contract).
 *
 * What it does: prints 'A' once, zeroes the first byte of every 4 KiB page
 * of the test range [0x40100000, 0x46400000) (RAM base 0x40000000 + 1 MiB ..
 * + 100 MiB) in ascending order, then loops forever adding one to the first
 * byte of every page, ascending, printing 'B' after each full pass.  Nothing
 * else in the range is ever written.
 *
 * How it is loaded: qemu-system-aarch64 -machine virt,gic-version=max
 * -cpu cortex-a57 -m 150M -kernel guest.bin.  guest.bin is a raw image (no arm64
 * Image header), which QEMU's -kernel loader places at RAM base + 0x80000
 * = 0x40080000 and enters through its small boot stub at EL1 with the MMU
 * and caches off, x0 = DTB address (see below).  A 64-bit -cpu is
 * required (the virt default, cortex-a15, is 32-bit); the guest needs
 * nothing beyond ARMv8.0, so any 64-bit model runs it.
 *
 * Console: the virt board's PL011 UART at 0x09000000.  QEMU's model needs
 * no set-up; we write a byte to the data register (offset 0x00) after
 * waiting for TXFF (bit 5 of UARTFR, offset 0x18) to clear, as real
 * hardware would require.
 *
 * The DTB: because a raw image is booted like a Linux kernel, QEMU also
 * writes its generated device tree (1 MiB blob, ~8 KiB used) to RAM, 2 MiB
 * aligned above RAM base + min(RAM/2, 128 MiB); with -m 150M that is
 * 0x44c00000, INSIDE the test range.  The guest does not need the DTB, and
 * the contract needs every byte but the first of each page to be zero, so
 * before printing 'A' the guest erases the blob (x0 = its address, size
 * from the header's totalsize field), only if x0 lies in the test range and
 * the FDT magic is there.  After that nothing but the counters is written.
 *
 * Memory: the code lives at 0x40080000, below the test range.  The program
 * uses no stack and no data: everything is kept in registers; the only
 * writes are to the UART, the DTB erase above and the counters.
 * With the MMU off every data access is Device-nGnRnE; under TCG that costs
 * nothing noticeable, so no page tables are set up.
 */

        .equ    UART_BASE,  0x09000000  /* PL011 on the virt board */
        .equ    UART_DR,    0x00        /* data register */
        .equ    UART_FR,    0x18        /* flag register */
        .equ    UART_TXFF,  5           /* FR bit: transmit FIFO full */

        .equ    RANGE_START, 0x40100000 /* RAM base + 1 MiB */
        .equ    RANGE_END,   0x46400000 /* RAM base + 100 MiB */
        .equ    PAGE_SIZE,   4096

        /* Print the byte in w0; clobbers w9.  A macro, so no stack or
         * link register is needed. */
        .macro  putc
1:      ldr     w9, [x1, #UART_FR]
        tbnz    w9, #UART_TXFF, 1b
        strb    w0, [x1, #UART_DR]
        .endm

        .text
        .globl  _start
_start:
        /* All constants are multiples of 64 KiB, so each fits one movz
         * (16-bit immediate shifted by 16): no literal pool. */
        mov     x1, #UART_BASE
        mov     x2, #RANGE_START
        mov     x3, #RANGE_END

        /* Erase QEMU's DTB if it sits in the test range (see header).
         * 8-byte stores: the blob is 8-byte aligned (FDT rule; QEMU puts it
         * on a 2 MiB boundary) and with the MMU off memory is Device type,
         * where accesses must be naturally aligned. */
        cmp     x0, x2
        b.lo    no_dtb
        cmp     x0, x3
        b.hs    no_dtb
        ldr     w5, [x0]                /* FDT magic 0xd00dfeed, big-endian */
        movz    w6, #0x0dd0             /* ...read little-endian: 0xedfe0dd0 */
        movk    w6, #0xedfe, lsl #16
        cmp     w5, w6
        b.ne    no_dtb
        ldr     w5, [x0, #4]            /* totalsize, big-endian */
        rev     w5, w5
        add     x5, x0, x5              /* end of the blob */
        cmp     x5, x3                  /* never write past the test range */
        csel    x5, x5, x3, lo
erase:  str     xzr, [x0], #8
        cmp     x0, x5
        b.lo    erase
no_dtb:
        mov     w0, #'A'
        putc

        /* Zero the first byte of every page, ascending. */
        mov     x4, x2
zero:   strb    wzr, [x4]
        add     x4, x4, #PAGE_SIZE
        cmp     x4, x3
        b.lo    zero

        /* Forever: increment the first byte of every page, ascending,
         * then print 'B'. */
        mov     w0, #'B'
pass:   mov     x4, x2
incr:   ldrb    w5, [x4]
        add     w5, w5, #1
        strb    w5, [x4]
        add     x4, x4, #PAGE_SIZE
        cmp     x4, x3
        b.lo    incr
        putc
        b       pass
