//! Fuzz target: arbitrary bytes as an Ethernet frame through `synwall_proto::wire::parse`, as
//! they are and with their IPv4 and TCP checksums repaired, so that mutated frames also get past
//! the checksums. Asserted: no panic; `ip_packet_range` stays inside the frame; a segment parsed
//! as ours is to a served endpoint from a non-zero port, its payload is exactly the rest of the IP
//! packet `ip_packet_range` gives, and emitting it and parsing the result gives it back. The
//! checks are `synwall_fuzz::wire_parse`'s (harness/).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| synwall_fuzz::wire_parse(data));
