//! Fuzz target: the input as a script of up to 256 steps driving one `Listener` (8-entry SYN
//! queue) through virtual time: time advancing with its timers run, SYNs and other segments
//! built from fuzzer-chosen fields with valid checksums, ACKs answering the SYN-ACKs it sent
//! (corrupted or not), raw frames, reports on the connections it accepted, settings reloads.
//! Asserted after every step: the SYN queue within its bound; no `Accepted` without a SYN-ACK
//! the listener sent for it, nor while the connection is still being handed off; every frame
//! sent parses back; counters and gauges agree with what was seen. The script's format and the
//! checks are `synwall_fuzz::listener_frames`'s (harness/).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| synwall_fuzz::listener_frames(data));
