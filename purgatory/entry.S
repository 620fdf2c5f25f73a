/* The purgatory's entry. At a crash the kernel's relocate_kernel jumps here
 * in 64-bit mode, on identity-mapped page tables, with interrupts off and its
 * own GDT and stack in its control page. This code stands on nothing of that
 * but the page tables: it takes its own stack and GDT, checks the loaded
 * segments (purgatory.c), and enters the capture kernel as the 64-bit boot
 * protocol asks (Documentation/arch/x86/boot.rst, "64-bit Boot Protocol"). */

#define KHOD_BOOT_CS 0x10 /* __BOOT_CS: flat 64-bit code */
#define KHOD_BOOT_DS 0x18 /* __BOOT_DS: flat data */
#define KHOD_STACK_SIZE 8192

	.text
	.balign	16
	.globl	khod_purgatory_start
	.type	khod_purgatory_start, @function
khod_purgatory_start:
	cli
	cld
	leaq	khod_stack_top(%rip), %rsp

	lgdt	khod_gdt_pointer(%rip)
	movl	$KHOD_BOOT_DS, %eax
	movl	%eax, %ds
	movl	%eax, %es
	movl	%eax, %ss
	movl	%eax, %fs
	movl	%eax, %gs
	/* CS changes only through a far transfer: return far to the next line. */
	leaq	1f(%rip), %rax
	pushq	$KHOD_BOOT_CS
	pushq	%rax
	lretq
1:
	call	khod_purgatory_verify
	testl	%eax, %eax
	jz	.Lmismatch

	/* %rsi is boot_params; every other general register is 0, and %rsp the
	 * top of this stack (the kernel sets its own before it uses one). */
	movq	khod_boot_params(%rip), %rsi
	leaq	khod_stack_top(%rip), %rsp
	xorl	%eax, %eax
	xorl	%ebx, %ebx
	xorl	%ecx, %ecx
	xorl	%edx, %edx
	xorl	%edi, %edi
	xorl	%ebp, %ebp
	xorl	%r8d, %r8d
	xorl	%r9d, %r9d
	xorl	%r10d, %r10d
	xorl	%r11d, %r11d
	xorl	%r12d, %r12d
	xorl	%r13d, %r13d
	xorl	%r14d, %r14d
	xorl	%r15d, %r15d
	jmpq	*khod_kernel_entry(%rip)

	/* The segments changed since khod loaded them: booting them could do
	 * anything, so stop here for good. */
.Lmismatch:
	cli
	hlt
	jmp	.Lmismatch
	.size	khod_purgatory_start, . - khod_purgatory_start

	.data
	/* The accessed bits are set already, so loading a selector does not
	 * write to the table. */
	.balign	16
khod_gdt:
	.quad	0			/* null */
	.quad	0			/* 0x08: unused */
	.quad	0x00af9b000000ffff	/* 0x10: code, 64-bit (L), execute/read, DPL 0, 4 GiB */
	.quad	0x00cf93000000ffff	/* 0x18: data, 32-bit (D/B), read/write, DPL 0, 4 GiB */
khod_gdt_end:

	.balign	16
khod_gdt_pointer:
	.word	khod_gdt_end - khod_gdt - 1
	.quad	khod_gdt

	.bss
	.balign	4096
khod_stack:
	.skip	KHOD_STACK_SIZE
khod_stack_top:

	.section .note.GNU-stack, "", @progbits
