/*
 * x86_64 (machine "pc") migration-test guest: one 512-byte boot sector.
 *
 * What it does (see ../README): print 'A' once, zero the first byte of
 * every 4 KiB page of [1 MiB, 100 MiB), then forever add one to the first
 * byte of each page in ascending order, printing 'B' after each pass.
 * Nothing else in the test range is ever written.
 *
 * How it is loaded: as a raw boot disk (-drive file=guest.img,format=raw).
 * SeaBIOS reads sector 0 to 0x7c00 and jumps there in 16-bit real mode;
 * the sector must end with the 0x55 0xAA signature.  Real mode only
 * reaches ~1 MiB, so we open the A20 gate (port 0x92 "fast A20") and
 * switch to 32-bit protected mode with a flat 4 GiB code/data GDT.
 * Paging stays off, so addresses are physical.
 *
 * Console: COM1 16550 UART at I/O port 0x3f8.  SeaBIOS already set it
 * up; we wait for LSR bit 5 (THR empty) and write the byte to THR.
 *
 * Memory used outside the test range: code/GDT at 0x7c00..0x7dff, stack
 * growing down from 0x7c00.  All below 1 MiB.
 */

        .equ RANGE_START, 0x00100000    /* 1 MiB */
        .equ RANGE_END,   0x06400000    /* 100 MiB (exclusive) */
        .equ PAGE,        4096
        .equ COM1,        0x3f8         /* 16550 UART base (THR) */
        .equ CODE_SEL,    0x08          /* GDT entry 1 */
        .equ DATA_SEL,    0x10          /* GDT entry 2 */

        .code16
        .text
        .globl _start
_start:
        cli
        /* Some BIOSes enter with CS:IP = 07c0:0000; normalise to 0000:7cxx
         * because the code is linked at 0x7c00 with segment base 0. */
        ljmp    $0, $1f
1:      xorw    %ax, %ax
        movw    %ax, %ds
        movw    %ax, %es
        movw    %ax, %ss
        movw    $0x7c00, %sp            /* stack below the boot sector */

        /* Fast A20: set bit 1 of System Control Port A (0x92) without
         * touching bit 0 (which would reset the machine). Without A20,
         * bit 20 of every address is forced to 0 and the range aliases. */
        inb     $0x92, %al
        orb     $0x02, %al
        andb    $0xfe, %al
        outb    %al, $0x92

        /* Enter 32-bit protected mode: load GDT, set CR0.PE, far jump to
         * reload CS with the 32-bit code selector. */
        lgdtl   gdt_desc
        movl    %cr0, %eax
        orl     $1, %eax
        movl    %eax, %cr0
        ljmpl   $CODE_SEL, $pm32

        .code32
pm32:
        movw    $DATA_SEL, %ax
        movw    %ax, %ds
        movw    %ax, %es
        movw    %ax, %ss
        movw    %ax, %fs
        movw    %ax, %gs
        movl    $0x7c00, %esp

        movb    $'A', %al
        call    putc

        /* Zero the first byte of every page, ascending. */
        movl    $RANGE_START, %ebx
2:      movb    $0, (%ebx)
        addl    $PAGE, %ebx
        cmpl    $RANGE_END, %ebx
        jb      2b

        /* Forever: increment the first byte of every page, then print 'B'. */
3:      movl    $RANGE_START, %ebx
4:      incb    (%ebx)
        addl    $PAGE, %ebx
        cmpl    $RANGE_END, %ebx
        jb      4b
        movb    $'B', %al
        call    putc
        jmp     3b

/* putc: send %al to COM1 once the transmit holding register is empty
 * (Line Status Register = base+5, bit 5).  Clobbers %edx, %ah. */
putc:
        movb    %al, %ah
        movw    $COM1 + 5, %dx
5:      inb     %dx, %al
        testb   $0x20, %al
        jz      5b
        movw    $COM1, %dx
        movb    %ah, %al
        outb    %al, %dx
        ret

/* Flat GDT: null, 32-bit code (base 0, limit 4 GiB, execute/read),
 * 32-bit data (base 0, limit 4 GiB, read/write).  Granularity 4 KiB. */
        .p2align 3
gdt:
        .quad   0
        .quad   0x00cf9a000000ffff      /* CODE_SEL */
        .quad   0x00cf92000000ffff      /* DATA_SEL */
gdt_end:
gdt_desc:
        .word   gdt_end - gdt - 1
        .long   gdt

        /* Pad to 510 bytes and add the BIOS boot signature. */
        .org    510
        .byte   0x55, 0xaa
