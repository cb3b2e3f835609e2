//! The keys the outer vmm sends the inner one over the serial line, with Ctrl-A x in band.
//!
//! The outer vmm owns the user's terminal and sees Ctrl-A x first; the guest's stats and exit
//! belong to the inner vmm, so the outer passes the quit on instead of killing the lab host.
//! In the byte stream a Ctrl-A is an escape: `C-a C-a` is one Ctrl-A for the guest, `C-a x`
//! means quit (the same keys a user types at a terminal). init tells the inner vmm, by
//! [`ENV`], that its stdin speaks this.
const CTRL_A: u8 = 0x01;

/// Set by the lab's init for the inner vmm: its stdin carries escaped keys.
pub const ENV: &str = "VMM_LAB_KEYS";

/// What the outer vmm sends for Ctrl-A x.
pub const QUIT: [u8; 2] = [CTRL_A, b'x'];

/// The guest's input bytes as the outer vmm sends them: every Ctrl-A doubled. The inner vmm
/// reads them back with the console's own [`common::console::EscapeState`].
pub fn escape(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    for &b in bytes {
        out.push(b);
        if b == CTRL_A {
            out.push(CTRL_A);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::console::EscapeState;

    #[test]
    fn escaped_bytes_come_back_unchanged_and_quit_is_seen() {
        let all: Vec<u8> = (0..=255u8).chain([CTRL_A, b'x', CTRL_A, CTRL_A]).collect();
        let mut wire = escape(&all);
        wire.extend_from_slice(&QUIT);
        wire.extend_from_slice(b"after");
        // Byte by byte, so every escape is split across two reads.
        let (mut got, mut quit) = (Vec::new(), false);
        let mut u = EscapeState::default();
        for b in &wire {
            let (bytes, q) = u.feed(std::slice::from_ref(b));
            got.extend(bytes);
            if q {
                quit = true;
                break;
            }
        }
        assert_eq!(got, all, "a guest's Ctrl-A x is data, not a quit");
        assert!(quit);
        assert_eq!(EscapeState::default().feed(&escape(b"plain")), (b"plain".to_vec(), false));
    }
}
