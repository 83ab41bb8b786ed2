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
 * growing down from 0x7c00, and (guest-s3.img only) one byte at 0x500 and
 * the FACS's waking vector.  All but the FACS below 1 MiB.
 *
 * Assembled with --defsym SUSPEND=1 (guest-s3.img), the guest also
 * suspends to ACPI S3 once, right after its first 'B', and counts on from
 * where it stopped when QEMU wakes it (system_wakeup):
 *
 * - Before suspending it writes the address of `resume` into the FACS's
 *   firmware waking vector (FACS+12).  QEMU resets the machine on wakeup;
 *   SeaBIOS sees the S3 resume code QEMU left in the CMOS and far-calls
 *   the vector in real mode (CS = vector >> 4, IP = vector & 15), instead
 *   of booting the disk again, which would print 'A' and zero the range.
 *   The FACS is found the way SeaBIOS looks for it: the RSDP ("RSD PTR "
 *   on a 16-byte boundary in 0xe0000..0xfffff), its RSDT (RSDP+16), the
 *   RSDT entry whose signature is "FACP", that FADT's FIRMWARE_CTRL (+36).
 * - It requests S3 by writing SLP_TYP=1 | SLP_EN (0x2400) to PM1a_CNT,
 *   port 0x604: SeaBIOS puts the PIIX4's PM I/O base at 0x600, and QEMU
 *   takes sleep type 1 as S3.  No ACPI enable (0xf1 to port 0xb2) first:
 *   QEMU suspends and wakes the guest without it (measured on 7.2, 10.0
 *   and 11.1).  QEMU stops the vCPUs: run state 'suspended'.
 * - `resume` re-enters protected mode like the boot does and goes on to
 *   the next pass.  The guest suspends between two passes, when every
 *   counter is equal, so no register needs to survive the reset: the
 *   pattern goes on from the range itself.
 * - What must survive is one byte, SUSPENDED_FLAG at 0x500: set before
 *   suspending, so the guest suspends only once whatever happens next.  It
 *   is RAM below 1 MiB, outside the test range, and where a reboot leaves
 *   it: a normal boot loads the sector at 0x7c00 afresh, and SeaBIOS
 *   clears 0x7000..0x8ffff before it boots (startBoot); 0x500 is the first
 *   byte past the BIOS data area.  A guest that QEMU rebooted instead of
 *   resuming prints 'A' again and does not suspend again (measured with
 *   the waking vector left out): the tests see the 'A'.
 * - If no FACS is found, it prints '?' and counts on without suspending.
 * - After the request it halts with interrupts off: the vCPU may run on
 *   a little before QEMU stops it, and must not touch the range meanwhile.
 */

        .equ RANGE_START, 0x00100000    /* 1 MiB */
        .equ RANGE_END,   0x06400000    /* 100 MiB (exclusive) */
        .equ PAGE,        4096
        .equ COM1,        0x3f8         /* 16550 UART base (THR) */
        .equ CODE_SEL,    0x08          /* GDT entry 1 */
        .equ DATA_SEL,    0x10          /* GDT entry 2 */
        .ifdef SUSPEND
        .equ PM1A_CNT,    0x604         /* SeaBIOS's PIIX4 PM base + 4 */
        .equ SLP_S3,      0x2400        /* SLP_EN | SLP_TYP 1 (S3 in QEMU) */
        .equ SUSPENDED_FLAG, 0x500      /* non-zero once we have suspended */
        .equ BIOS_AREA,   0x000e0000    /* where the RSDP may be */
        .equ BIOS_END,    0x00100000
        .endif

        .code16
        .text
        .globl _start
_start:
        cli
        /* Some BIOSes enter with CS:IP = 07c0:0000; normalise to 0000:7cxx
         * because the code is linked at 0x7c00 with segment base 0. */
        ljmp    $0, $1f
        .ifdef SUSPEND
/* The FACS waking vector: SeaBIOS enters here, in real mode, on S3
 * resume, with CS = resume >> 4.  %si tells pm32 not to start afresh. */
resume:
        cli
        movw    $1, %si
        ljmp    $0, $setup
1:      xorw    %si, %si                /* a boot: print 'A', zero the range */
        .else
1:
        .endif
setup:  xorw    %ax, %ax
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
        .ifdef SUSPEND
        testw   %si, %si
        jnz     3f                      /* woken from S3: the next pass */
        .endif

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
        .ifdef SUSPEND
        call    suspend_once
        .endif
        jmp     3b

        .ifdef SUSPEND
/* suspend_once: the first time, set the waking vector and request S3;
 * QEMU stops the vCPUs in the halt loop below, and a wakeup enters at
 * `resume`.  Later calls return at once.  Clobbers %eax, %ecx, %edx,
 * %esi, %edi. */
suspend_once:
        cmpb    $0, SUSPENDED_FLAG
        jne     9f
        movb    $1, SUSPENDED_FLAG
        movl    $BIOS_AREA, %esi        /* the RSDP: "RSD PTR " */
6:      cmpl    $0x20445352, (%esi)     /* "RSD " */
        jne     7f
        cmpl    $0x20525450, 4(%esi)    /* "PTR " */
        je      8f
7:      addl    $16, %esi
        cmpl    $BIOS_END, %esi
        jb      6b
        jmp     no_facs
8:      movl    16(%esi), %esi          /* RsdtAddress */
        movl    %esi, %edi
        addl    4(%esi), %edi           /* the RSDT's end: + its Length */
        addl    $36, %esi               /* its entries, after the header */
10:     cmpl    %edi, %esi
        jae     no_facs
        lodsl                           /* a table's address */
        cmpl    $0x50434146, (%eax)     /* "FACP": the FADT */
        jne     10b
        movl    36(%eax), %eax          /* FIRMWARE_CTRL: the FACS */
        movl    $resume, 12(%eax)       /* its firmware waking vector */
        movw    $SLP_S3, %ax
        movw    $PM1A_CNT, %dx
        outw    %ax, %dx
11:     hlt
        jmp     11b
no_facs:
        movb    $'?', %al
        call    putc
9:      ret
        .endif

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
