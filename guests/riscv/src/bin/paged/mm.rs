//! Physical frames and Sv39 page tables, the way a teaching kernel builds them.
//!
//! RAM is identity-mapped in the kernel's address space, so the kernel reaches every frame
//! (page tables, trap contexts, user pages) through its physical address.

pub const PAGE: usize = 4096;
pub const RAM_END: usize = 0x8800_0000;
/// The kernel image (code, data, boot stack) must fit below this; frames come from above it.
pub const IMAGE_END: usize = 0x8040_0000;

/// The very top page of the address space: trap entry and exit, in every address space.
pub const TRAMPOLINE: usize = usize::MAX - PAGE + 1;
/// The page below the trampoline: the running task's trap context, in its own address space.
pub const TRAP_CONTEXT: usize = TRAMPOLINE - PAGE;
pub const KERNEL_STACK_SIZE: usize = 2 * PAGE;

pub const V: usize = 1 << 0;
pub const R: usize = 1 << 1;
pub const W: usize = 1 << 2;
pub const X: usize = 1 << 3;
pub const U: usize = 1 << 4;
pub const A: usize = 1 << 6;
pub const D: usize = 1 << 7;

/// Task `id`'s kernel stack, in the kernel's address space: [bottom, top), in the upper
/// half below the trampoline, with an unmapped guard page under each.
pub fn kernel_stack(id: usize) -> (usize, usize) {
    let top = TRAMPOLINE - id * (KERNEL_STACK_SIZE + PAGE);
    (top - KERNEL_STACK_SIZE, top)
}

/// A bump allocator of zeroed 4 KiB frames.
pub struct Frames {
    next: usize,
}

impl Frames {
    pub const fn new() -> Self {
        Frames { next: IMAGE_END }
    }

    pub fn alloc(&mut self) -> usize {
        let f = self.next;
        assert!(f < RAM_END, "out of frames");
        self.next += PAGE;
        // SAFETY: the frame is RAM that nothing else uses yet (identity-mapped).
        unsafe { core::ptr::write_bytes(f as *mut u8, 0, PAGE) };
        f
    }
}

fn vpn(va: usize, level: usize) -> usize {
    (va >> (12 + 9 * level)) & 0x1ff
}

fn pte_ptr(table: usize, va: usize, level: usize) -> *mut usize {
    (table + vpn(va, level) * 8) as *mut usize
}

fn next_table(pte: usize) -> usize {
    (pte >> 10) << 12
}

/// satp for the table at `root` with `asid`.
pub fn satp(root: usize, asid: usize) -> usize {
    (8 << 60) | (asid << 44) | (root >> 12)
}

/// The leaf PTE slot for `va` at `level` (0: 4 KiB, 1: 2 MiB), creating tables on the way.
pub fn slot(frames: &mut Frames, root: usize, va: usize, level: usize) -> *mut usize {
    let mut table = root;
    for l in (level + 1..3).rev() {
        let p = pte_ptr(table, va, l);
        // SAFETY: p points into a page-table frame we own.
        let pte = unsafe { *p };
        table = if pte & V != 0 {
            next_table(pte)
        } else {
            let t = frames.alloc();
            // SAFETY: as above.
            unsafe { *p = ((t >> 12) << 10) | V };
            t
        };
    }
    pte_ptr(table, va, level)
}

/// Maps `va` to `pa` with a leaf at `level` and `flags` (V added).
pub fn map(frames: &mut Frames, root: usize, va: usize, pa: usize, level: usize, flags: usize) {
    let p = slot(frames, root, va, level);
    // SAFETY: p is a PTE slot in one of our tables.
    unsafe { *p = ((pa >> 12) << 10) | flags | V };
}

/// The leaf PTE for `va` and the physical address it maps `va` to, by a software walk.
pub fn walk(root: usize, va: usize) -> Option<(usize, usize)> {
    let mut table = root;
    for level in (0..3).rev() {
        // SAFETY: tables are frames we built; the walk only reads them.
        let pte = unsafe { *pte_ptr(table, va, level) };
        if pte & V == 0 {
            return None;
        }
        if pte & (R | X) != 0 {
            let size = PAGE << (9 * level);
            return Some((pte, next_table(pte) + (va & (size - 1))));
        }
        table = next_table(pte);
    }
    None
}

/// Copies `len` bytes at user address `va` of the address space `root` into `out`, page by
/// page through the task's own table; None if any byte is not a readable user page.
pub fn copy_from_user(root: usize, va: usize, len: usize, mut out: impl FnMut(u8)) -> Option<()> {
    for a in va..va.checked_add(len)? {
        let (pte, pa) = walk(root, a)?;
        if pte & (U | R) != U | R {
            return None;
        }
        // SAFETY: pa is RAM mapped readable for the user, identity-mapped for us.
        out(unsafe { *(pa as *const u8) });
    }
    Some(())
}
