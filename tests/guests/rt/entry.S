/*
 * PVH entry, long-mode switch, static page tables / GDT / IDT, exception
 * stubs and the AP real-mode trampoline.
 *
 * Everything the CPU needs (page tables, GDT, IDT) is static data, so no
 * instructions are spent building it: under KVM's instruction emulator each
 * instruction costs ~1 us. Nothing in here is written at run time, so a VMM
 * reset that does not reload the image still finds it intact.
 */

#define SEL_CODE64	0x08
#define SEL_DATA	0x10
#define SEL_CODE32	0x18

#define MSR_EFER	0xc0000080
#define EFER_LME	0x100
#define CR4_PAE		0x20
#define CR0_PE		0x1
#define CR0_ET		0x10
#define CR0_PG		0x80000000

#define LAPIC_ID_REG	0xfee00020
#define RT_MAX_CPUS	16
#define AP_STACK_SHIFT	13		/* 8 KiB per AP */
#define BSP_STACK_SIZE	16384

/* PTE bits: P RW PWT PCD A D PS */
#define PTE_TABLE	0x23		/* P|RW|A */
#define PDE_2M_WB	0xe3		/* P|RW|A|D|PS */
#define PDE_2M_UC	0xfb		/* P|RW|PWT|PCD|A|D|PS (3-4 GiB: MMIO hole) */

/* ---- Xen PVH note: XEN_ELFNOTE_PHYS32_ENTRY (18), 4-byte desc. ----
 * The linker script follows this section with 4 zero bytes, so readers that
 * take an 8-byte desc (QEMU, like Linux's .quad note) also see the entry. */
	.section .note.Xen, "a", @note
	.balign 4
	.long 4			/* namesz */
	.long 4			/* descsz */
	.long 18		/* XEN_ELFNOTE_PHYS32_ENTRY */
	.asciz "Xen"
	.long _start32

/* Enable long mode from 32-bit protected mode and jump to `target` (64-bit).
 * Clobbers eax, ecx, edx; keeps ebx. */
.macro ENTER_LONG_MODE target
	movl	$CR4_PAE, %eax
	movl	%eax, %cr4
	movl	$rt_pml4, %eax
	movl	%eax, %cr3
	movl	$MSR_EFER, %ecx
	movl	$EFER_LME, %eax
	xorl	%edx, %edx
	wrmsr
	movl	$(CR0_PG | CR0_ET | CR0_PE), %eax
	movl	%eax, %cr0
	ljmp	$SEL_CODE64, $\target
.endm

	.section .text.entry, "ax", @progbits
	.code32
/* PVH entry: 32-bit flat protected mode, paging off, EBX = start_info. */
	.globl	_start32
_start32:
	lgdt	rt_gdt_desc
	ENTER_LONG_MODE rt_bsp64

/* AP: arrives from the trampoline in 32-bit mode with CS = SEL_CODE32 and
 * real-mode data segments (64 KiB limits): load flat ones first. */
	.globl	rt_ap32
rt_ap32:
	movl	$SEL_DATA, %eax
	movl	%eax, %ds
	movl	%eax, %es
	movl	%eax, %ss
	movl	LAPIC_ID_REG, %ebx
	shrl	$24, %ebx
	ENTER_LONG_MODE rt_ap64

	.code64
rt_bsp64:
	movl	$SEL_DATA, %eax
	movl	%eax, %ds
	movl	%eax, %es
	movl	%eax, %ss
	movl	$rt_bsp_stack_top, %esp
	lidt	rt_idt_desc(%rip)
	cld
	/* Zero .bss: one (rep) instruction. The stacks are not in .bss. */
	movl	$__bss_start, %edi
	movl	$__bss_qwords, %ecx
	xorl	%eax, %eax
	rep stosq
	movl	%ebx, %edi		/* zero-extends: start_info paddr */
	call	rt_main
1:	cli
	hlt
	jmp	1b

rt_ap64:
	movl	$SEL_DATA, %eax
	movl	%eax, %ds
	movl	%eax, %es
	movl	%eax, %ss
	cmpl	$RT_MAX_CPUS, %ebx
	jae	2f
	lidt	rt_idt_desc(%rip)
	cld
	leal	1(%ebx), %eax
	shll	$AP_STACK_SHIFT, %eax
	addl	$rt_ap_stacks, %eax
	movl	%eax, %esp		/* top of stack slot [apic_id] */
	movb	$1, rt_ap_alive(%rbx)
	lock incl rt_ap_booted(%rip)
	movl	%ebx, %edi
	call	*rt_ap_fn(%rip)
2:	cli
	hlt
	jmp	2b

/* ---- Exception and interrupt stubs: vector v at rt_isr_stubs + 16 * v
 * (the static IDT relies on that stride; a stub is at most 12 bytes).
 * Vectors without an error code (all of 32-255) push a dummy 0. */
	.section .text.isr, "ax", @progbits
	.balign 16
	.globl	rt_isr_stubs
rt_isr_stubs:
	.set	vec, 0
	.rept	256
	.balign	16
	.if	(vec == 8) || ((vec >= 10) && (vec <= 14)) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
	.else
	pushq	$0
	.endif
	pushq	$vec
	jmp	rt_isr_common
	.set	vec, vec + 1
	.endr

/*
 * Frame (struct rt_frame in exceptions.c): r15 ... rax, vector, error,
 * rip, cs, rflags, rsp, ss. 22 qwords, so RSP stays 16-byte aligned.
 *
 * KVM's instruction emulator cannot execute iretq in protected/long mode,
 * so when rt_exception() returns (a fixup was armed, or the vector was an
 * interrupt, >= 32, dispatched by rt_irq_dispatch), we resume without it:
 * RIP and RFLAGS are stored just below the interrupted RSP (guests are built
 * with -mno-red-zone, so nothing lives there), then popfq; ret. CS and SS
 * never change (everything runs at CPL0 with the same selectors).
 */
rt_isr_common:
	pushq	%rax
	pushq	%rbx
	pushq	%rcx
	pushq	%rdx
	pushq	%rsi
	pushq	%rdi
	pushq	%rbp
	pushq	%r8
	pushq	%r9
	pushq	%r10
	pushq	%r11
	pushq	%r12
	pushq	%r13
	pushq	%r14
	pushq	%r15
	movq	%rsp, %rdi
	call	rt_exception
	/* Offsets: gprs 0..119, vector 120, error 128, rip 136, cs 144,
	 * rflags 152, rsp 160, ss 168. The new RSP goes into the CS slot,
	 * which lies below anything the two stores can overwrite. */
	movq	160(%rsp), %rax
	movq	136(%rsp), %rbx
	movq	152(%rsp), %rcx
	subq	$16, %rax
	movq	%rax, 144(%rsp)
	movq	%rbx, 8(%rax)
	movq	%rcx, (%rax)
	popq	%r15
	popq	%r14
	popq	%r13
	popq	%r12
	popq	%r11
	popq	%r10
	popq	%r9
	popq	%r8
	popq	%rbp
	popq	%rdi
	popq	%rsi
	popq	%rdx
	popq	%rcx
	popq	%rbx
	popq	%rax
	movq	24(%rsp), %rsp		/* skip vector, error, rip -> CS slot */
	popfq
	ret

/* ---- AP trampoline: copied to 0x10000 and entered by SIPI vector 0x10 in
 * real mode (CS = 0x1000). It only needs to reach 32-bit protected mode;
 * the rest (rt_ap32) runs from the image. Position independent. */
	.section .text.tramp, "ax", @progbits
	.code16
	.globl	rt_tramp_start, rt_tramp_end
rt_tramp_start:
	cli
	lgdtl	%cs:rt_tramp_gdtr - rt_tramp_start
	movl	$(CR0_ET | CR0_PE), %eax	/* also clears CD/NW left by INIT */
	movl	%eax, %cr0
	ljmpl	$SEL_CODE32, $rt_ap32
	.balign	4
rt_tramp_gdtr:
	.word	rt_gdt_end - rt_gdt - 1
	.long	rt_gdt
rt_tramp_end:
	.code64

/* ---- GDT and IDT (accessed bits preset so the CPU never writes them) ---- */
	.section .rodata.rt_tables, "a", @progbits
	.balign	16
rt_gdt:
	.quad	0
	.quad	0x00af9b000000ffff	/* 0x08: 64-bit code */
	.quad	0x00cf93000000ffff	/* 0x10: flat data */
	.quad	0x00cf9b000000ffff	/* 0x18: flat 32-bit code */
rt_gdt_end:

	.balign	8
	.word	0, 0, 0
	.globl	rt_gdt_desc
rt_gdt_desc:
	.word	rt_gdt_end - rt_gdt - 1
	.quad	rt_gdt

	.balign	16
rt_idt:
	.set	vec, 0
	.rept	256			/* 32-255: rt_irq_dispatch() (exceptions.c) */
	.word	rt_isr_lo16 + vec * 16	/* rt_isr_lo16/hi16: see guest.ld; an
					 * R_X86_64_16 overflow fails the link */
	.word	SEL_CODE64
	.byte	0, 0x8e			/* present, DPL0, 64-bit interrupt gate */
	.word	rt_isr_hi16
	.long	0			/* offset 63:32 (image is below 4 GiB) */
	.long	0
	.set	vec, vec + 1
	.endr
rt_idt_end:

	.balign	8
	.word	0, 0, 0
rt_idt_desc:
	.word	rt_idt_end - rt_idt - 1
	.quad	rt_idt

/* ---- Page tables: identity map of [0, 4 GiB) with 2 MiB pages. ---- */
	.section .rodata.rt_pagetables, "a", @progbits
	.balign	4096
	.globl	rt_pml4
rt_pml4:
	.quad	rt_pdpt + PTE_TABLE
	.fill	511, 8, 0
rt_pdpt:
	.quad	rt_pd + 0x0000 + PTE_TABLE
	.quad	rt_pd + 0x1000 + PTE_TABLE
	.quad	rt_pd + 0x2000 + PTE_TABLE
	.quad	rt_pd + 0x3000 + PTE_TABLE
	.fill	508, 8, 0		/* >= 4 GiB: not present */
rt_pd:
	.set	pde, 0
	.rept	2048
	.if	pde >= 1536
	.quad	(pde << 21) | PDE_2M_UC
	.else
	.quad	(pde << 21) | PDE_2M_WB
	.endif
	.set	pde, pde + 1
	.endr

/* ---- Stacks: not in .bss, so they are never zeroed (NOLOAD in guest.ld). */
	.section .stack, "aw", @nobits
	.balign	16
rt_bsp_stack:
	.skip	BSP_STACK_SIZE
rt_bsp_stack_top:
	.globl	rt_ap_stacks
rt_ap_stacks:				/* slot k's top: rt_ap_stacks + (k+1)*8K */
	.skip	RT_MAX_CPUS << AP_STACK_SHIFT

	.section .note.GNU-stack, "", @progbits
