/*
 * ppc64 (big-endian) migration-test guest for the QEMU pseries machine.
 *
 * What it does (the contract in guests/README):
 *   print 'A'; zero the first byte of every 4 KiB page of the test range
 *   [1 MiB, 100 MiB) = [0x100000, 0x6400000) in ascending order; then loop
 *   forever adding 1 to the first byte of every page, ascending, and print
 *   'B' after each full pass.  Nothing else in the range is ever written.
 *
 * How it is loaded:
 *   qemu-system-ppc64 -machine pseries,x-vof=on,kernel-addr=0x7000000
 *   -kernel guest.elf.  QEMU loads an ELF -kernel through a translation
 *   that keeps the low 28 bits of each segment's physical address and adds
 *   kernel-addr, so this file is linked at 0 and lands at exactly 0x7000000
 *   (QEMU warns and moves kernel-addr if the lowest loaded address differs).
 *   VOF (QEMU's Virtual Open Firmware) then jumps to kernel-addr itself: the
 *   ELF entry point is ignored, so _start must be the first byte of the
 *   image, and a plain code address (no ELFv1 function descriptor) is used.
 *   Measured entry state (QEMU 7.2, default POWER9 CPU): NIP = 0x7000000,
 *   MSR = 0, i.e. big-endian, 32-bit mode (SF=0), real mode (IR=DR=0),
 *   supervisor, interrupts off; r1 = VOF's stack, r5 = OF client entry
 *   (both unused).  The code below works in 32- or 64-bit mode: every
 *   address is below 4 GiB and all values fit in 32 bits.
 *   VOF's default kernel-addr (0x400000) is inside the test range, hence
 *   kernel-addr=0x7000000 (112 MiB): above the range, below the 256 MiB of RAM.
 *
 * Console:
 *   the hypercall H_PUT_TERM_CHAR (0x58) via `sc 1`: r4 = terminal number
 *   0 (QEMU maps 0 to the default spapr-vty, i.e. the first -serial), r5 =
 *   byte count, r6/r7 = the bytes, left-justified, most significant first.
 *
 * Where code, stack and data live:
 *   the code is the only thing we own, at 0x7000000, outside the test range.
 *   No stack and no data are used: all state stays in registers.  The
 *   firmware's own stack (0x8000..0x10000) and VOF (0..~0x1000) are below
 *   1 MiB and never touched after entry.
 */

        .set    H_PUT_TERM_CHAR, 0x58

        .set    RANGE_START, 0x00100000     /* 1 MiB   */
        .set    RANGE_END,   0x06400000     /* 100 MiB */
        .set    PAGE_SIZE,   4096

        .machine power4
        .text
        .globl  _start
        .type   _start, @function
_start:
        /*
         * Registers used across hypercalls are non-volatile ones (r14-r16):
         * the PAPR hcall ABI lets the hypervisor clobber r0, r3-r12, CTR,
         * XER and CR.
         */
        li      %r3, 'A'
        bl      putc

        /* Step 2: zero the first byte of every page, ascending. */
        lis     %r14, RANGE_START@h
        lis     %r15, RANGE_END@h
        li      %r16, 0
1:      stb     %r16, 0(%r14)
        addi    %r14, %r14, PAGE_SIZE
        cmpld   %r14, %r15
        blt     1b

        /* Step 3: increment the first byte of every page, print 'B'. */
2:      lis     %r14, RANGE_START@h
3:      lbz     %r16, 0(%r14)
        addi    %r16, %r16, 1
        stb     %r16, 0(%r14)           /* stb keeps the low 8 bits: mod 256 */
        addi    %r14, %r14, PAGE_SIZE
        cmpld   %r14, %r15
        blt     3b
        li      %r3, 'B'
        bl      putc
        b       2b

/*
 * putc: write the byte in r3 to the console with H_PUT_TERM_CHAR.
 * Leaf routine: keeps LR in a register (r17), needs no stack.
 */
putc:
        mflr    %r17
        sldi    %r6, %r3, 56            /* the byte goes in the top of r6 */
        li      %r7, 0
        li      %r5, 1                  /* length: 1 byte */
        li      %r4, 0                  /* terminal 0 = default vty */
        li      %r3, H_PUT_TERM_CHAR
        sc      1                       /* hypercall; r3 = return code */
        mtlr    %r17
        blr
        .size   _start, . - _start
