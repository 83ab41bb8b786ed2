/*
 * s390x migration-test guest (see ../README for the contract).
 *
 * What it does: prints 'A' once, zeroes the first byte of every 4 KiB page
 * of the test range [1 MiB, 100 MiB), then loops forever adding one to the
 * first byte of every page (ascending) and prints 'B' after each pass.
 * Nothing else in the test range is ever written.
 *
 * How it is loaded: qemu-system-s390x -machine s390-ccw-virtio -bios guest.elf.
 * QEMU loads the bios ELF at fwbase + p_vaddr, where fwbase is (RAM size
 * capped at 2 GiB) minus 2 MiB (QEMU 7.2; later versions subtract 3 MiB),
 * rounded down to 64 KiB: 0x7e00000 with -m 128M.  It starts the CPU at
 * fwbase + e_entry in 64-bit addressing mode (PSW EA+BA), DAT off, all
 * interrupts disabled, prefix 0.  The image is linked at 0 and only uses
 * PC-relative addressing (larl, relative branches), so it runs wherever
 * QEMU puts it.  The absolute addresses used below are lowcore fields
 * (architecture-defined, below 8 KiB) and the test range bounds.
 *
 * Console: SCLP.  "-serial ..." on s390-ccw-virtio creates the sclpconsole
 * device, which handles "ASCII console data" events (type 0x1a).  A char is
 * sent with the SCLP command "write event data" (0x00760005) issued by the
 * SERVC instruction on a Service Call Control Block (SCCB).  SCLP writes the
 * SCCB's response code when it is done with it; the guest polls that code,
 * so the SCCB is never reused too early, and runs with interrupts off.
 * (It first waited for SCLP's service-signal interrupt instead: with QEMU
 * 7.2 under TCG, a guest stopped between SERVC and that interrupt, then
 * migrated, waited forever on the destination: the pending interrupt did
 * not cross the migration.  Polling keeps the console out of that.)
 *
 * Memory: code and the SCCB (own 4 KiB page) live in this image, i.e. at
 * 0x7e00000.. with -m 128M, above the test range.  No stack is used.
 */

        .set    RANGE_START_HI, 0x0010          /* 0x00100000 =   1 MiB */
        .set    RANGE_END_HI,   0x0640          /* 0x06400000 = 100 MiB */
        .set    PAGE,           4096

        /* lowcore field (absolute address, prefix is 0) */
        .set    LC_PGM_NEW_PSW,  0x1d0

        .text
        .globl  _start
_start:
        /* Program-check new PSW: disabled wait, so a bug stops the guest
         * (QEMU reports a guest panic) instead of looping on garbage. */
        llihh   %r0, 0x0002                     /* wait bit */
        oihl    %r0, 0x0001
        oilh    %r0, 0x8000
        stg     %r0, LC_PGM_NEW_PSW
        lghi    %r0, 0
        stg     %r0, LC_PGM_NEW_PSW+8

        lghi    %r5, 'A'
        brasl   %r14, putc

        llilh   %r3, RANGE_END_HI
        llilh   %r2, RANGE_START_HI
zero:   mvi     0(%r2), 0
        aghi    %r2, PAGE
        clgr    %r2, %r3
        jl      zero

pass:   llilh   %r2, RANGE_START_HI
incr:   ic      %r0, 0(%r2)
        ahi     %r0, 1
        stc     %r0, 0(%r2)                     /* one byte store only */
        aghi    %r2, PAGE
        clgr    %r2, %r3
        jl      incr
        lghi    %r5, 'B'
        brasl   %r14, putc
        j       pass

/*
 * putc: print the character in %r5 on the SCLP console.
 * Clobbers %r0, %r1, %r6; returns via %r14.
 */
putc:   larl    %r1, sccb
        xc      0(16,%r1), 0(%r1)
        mvi     1(%r1), 15                      /* SCCB length: 8 + 7 */
        mvi     9(%r1), 7                       /* event buffer length: 6 + 1 */
        mvi     10(%r1), 0x1a                   /* event type: ASCII console data */
        stc     %r5, 14(%r1)                    /* the character */
        llilh   %r6, 0x0076                     /* SCLP command word: */
        oill    %r6, 0x0005                     /* write event data */
1:      .insn   rre, 0xb2200000, %r6, %r1      /* SERVC: gas has no mnemonic */
        jh      1b                              /* cc 2: SCLP busy, retry */
        jo      3f                              /* cc 3: not operational */
2:      lh      %r0, 6(%r1)                     /* response code, 0 until done */
        ltr     %r0, %r0
        jz      2b
3:      br      %r14

        .bss
        .balign PAGE                            /* SCCB: must not cross a page */
sccb:   .skip   PAGE
