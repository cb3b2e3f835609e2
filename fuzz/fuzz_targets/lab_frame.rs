//! The lab's frame decoder (urvirt-riscv/src/lab/frame.rs), two ways.
//!
//! Raw (first byte even): the rest is a serial stream, fed in pieces of (second byte + 1)
//! bytes. No panic; no event carries more bytes than were fed; at most one exit, and it is the
//! last event; the noise kept stays bounded. Corpus files of real streams are `00 ff` + stream.
//!
//! Round trip (first byte odd): messages encoded with `encode`, with boot noise (free of ESC,
//! so it cannot hold a frame) between them, ending in an exit frame and trailing junk, cut
//! where the fuzzer says: the decoder returns exactly the messages, whatever the cuts.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use urvirt_riscv::lab::frame::{encode, Decoder, Event, InnerExit, EXIT, MAX_PAYLOAD, START, STDERR, STDOUT};

#[derive(Arbitrary, Debug)]
enum Message {
    Started,
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct RoundTrip {
    messages: Vec<(Message, Vec<u8>)>,
    exit: (bool, i32),
    trailer: Vec<u8>,
    cuts: Vec<u16>,
}

/// Feeds `stream` cut at `cuts` (positions taken modulo the length) and collects the events.
fn feed_in_pieces(d: &mut Decoder, stream: &[u8], cuts: &[u16]) -> Vec<Event> {
    let mut at: Vec<usize> = cuts.iter().map(|&c| c as usize % (stream.len() + 1)).collect();
    at.push(0);
    at.push(stream.len());
    at.sort_unstable();
    at.windows(2).flat_map(|w| d.feed(&stream[w[0]..w[1]])).collect()
}

fn raw(piece: usize, stream: &[u8]) {
    let mut d = Decoder::new();
    let events: Vec<Event> = stream.chunks(piece).flat_map(|c| d.feed(c)).collect();
    let carried: usize = events
        .iter()
        .map(|e| match e {
            Event::Stdout(b) | Event::Stderr(b) => b.len(),
            _ => 0,
        })
        .sum();
    assert!(carried <= stream.len());
    if let Some(i) = events.iter().position(|e| matches!(e, Event::Exit(_))) {
        assert_eq!(i, events.len() - 1, "events after the exit: {events:?}");
    }
    // The tail keeps 4 KiB of noise plus an incomplete frame (header and at most 64 KiB).
    assert!(d.noise_tail().len() <= 4096 + 10 + MAX_PAYLOAD);
}

fn round_trip(RoundTrip { messages, exit, trailer, cuts }: RoundTrip) {
    let mut stream = Vec::new();
    let mut expected = Vec::new();
    for (m, noise) in &messages {
        stream.extend(noise.iter().map(|&b| if b == 0x1b { b'.' } else { b }));
        match m {
            Message::Started => {
                encode(START, b"", &mut stream);
                expected.push(Event::Started);
            }
            Message::Stdout(data) => {
                encode(STDOUT, data, &mut stream);
                expected.push(Event::Stdout(data.clone()));
            }
            Message::Stderr(data) => {
                encode(STDERR, data, &mut stream);
                expected.push(Event::Stderr(data.clone()));
            }
        }
    }
    let exit = if exit.0 { InnerExit::Code(exit.1) } else { InnerExit::Signal(exit.1) };
    encode(EXIT, exit.to_payload().as_bytes(), &mut stream);
    expected.push(Event::Exit(exit));
    stream.extend_from_slice(&trailer);
    let mut d = Decoder::new();
    assert_eq!(feed_in_pieces(&mut d, &stream, &cuts), expected);
    assert!(d.feed(b"\x1b_URVO0001x").is_empty(), "nothing is decoded after the exit");
}

fuzz_target!(|data: &[u8]| match data {
    [mode, piece, stream @ ..] if mode % 2 == 0 => raw(*piece as usize + 1, stream),
    [_, rest @ ..] => {
        if let Ok(input) = RoundTrip::arbitrary_take_rest(arbitrary::Unstructured::new(rest)) {
            round_trip(input);
        }
    }
    [] => {}
});
