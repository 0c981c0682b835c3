//! Decoding never panics: random bytes, truncated frames and bit-flipped frames (with the
//! checksum repaired, so the decoders see the damage rather than stopping at the checksum) are
//! thrown at the assembler and every decoder. Deterministic: the same seed every run.

use crate::common;
use jkmon::protocol::assembler::{Assembler, AssemblerConfig};
use jkmon::protocol::cell_info::{self, CellInfo, JK02_24S, JK02_32S};
use jkmon::protocol::checksum::{sum32, sum8};
use jkmon::protocol::{
    command, device_info, logbook, rs485, serial, settings, variant, Decoded, StreamDecoder,
    Variant, VariantChoice,
};
use jkmon::report::json;
use jkmon::transport::sim::{Rng, SimBattery, SimConfig};

/// Every decoder on one input; results are looked at so nothing is optimised away.
fn all_decoders(bytes: &[u8]) -> usize {
    let mut ok = 0;
    for v in [
        None,
        Some(Variant::Jk02_24s),
        Some(Variant::Jk02_32s),
        Some(Variant::Jk04),
    ] {
        if let Ok(c) = cell_info::decode(bytes, v) {
            let _ = c.stats();
            let _ = json::values(&Decoded::CellInfo(c), None);
            ok += 1;
        }
    }
    for v in [Variant::Jk02_24s, Variant::Jk02_32s, Variant::Jk04] {
        ok += usize::from(settings::decode(bytes, v).is_ok());
    }
    ok += usize::from(device_info::decode(bytes).is_ok());
    ok += usize::from(logbook::decode(bytes).is_ok());
    if let Ok(r) = serial::decode_response(bytes) {
        let _ = json::values(&Decoded::Serial(Box::new(r)), None);
        ok += 1;
    }
    ok += usize::from(command::parse(bytes).is_ok());
    ok += usize::from(rs485::parse_request(bytes).is_ok());
    ok += usize::from(rs485::parse_tail(bytes).is_ok());
    let _ = variant::detect_from_cell_info(bytes);
    let _ = variant::detect_from_settings(bytes);
    ok
}

/// The assembler and the stream decoder on the input, cut into random chunks.
fn assemble(bytes: &[u8], rng: &mut Rng) -> usize {
    let config = match rng.below(4) {
        0 => AssemblerConfig::ble(),
        1 => AssemblerConfig::rs485(),
        2 => AssemblerConfig::serial(),
        _ => AssemblerConfig::any(),
    };
    let mut a = Assembler::new(config);
    let mut d = StreamDecoder::new(VariantChoice::Auto);
    let mut rest = bytes;
    let mut n = 0;
    while !rest.is_empty() {
        let take = (1 + rng.below(160) as usize).min(rest.len());
        a.push(&rest[..take]);
        rest = &rest[take..];
        while let Some(item) = a.poll() {
            if let Ok(decoded) = d.decode(&item) {
                let _ = json::values(&decoded, None);
            }
            n += 1;
        }
        assert!(a.pending() <= 4096);
    }
    a.finish();
    while a.poll().is_some() {
        n += 1;
    }
    n
}

/// Valid frames to damage: the corpus and frames jkmon builds itself.
fn seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for e in &common::corpus() {
        out.push(common::hex_bytes(common::field(e, "hex")));
    }
    let mut rng = Rng::new(99);
    for cells in [4u8, 16, 24] {
        let config = SimConfig {
            cells,
            ..SimConfig::default()
        };
        let mut b = SimBattery::new(&config, &mut rng);
        b.step(30.0, &mut rng);
        let info: CellInfo = b.cell_info(1);
        out.push(cell_info::encode_jk02(&info, &JK02_32S).to_vec());
        out.push(cell_info::encode_jk02(&info, &JK02_24S).to_vec());
    }
    out.push(serial::request_read_all().to_vec());
    out
}

/// Repairs the checksum of whatever frame kind the bytes start with.
fn repair(b: &mut [u8]) {
    if b.len() >= 300 && b[..4] == [0x55, 0xAA, 0xEB, 0x90] {
        b[299] = sum8(&b[..299]);
    } else if b.len() >= 20 && b[..4] == [0xAA, 0x55, 0x90, 0xEB] {
        b[19] = sum8(&b[..19]);
    } else if let Some(total) = serial::announced_len(b).filter(|t| *t <= b.len() && *t >= 21) {
        let s = sum32(&b[..total - 4]);
        b[total - 4..total].copy_from_slice(&s.to_be_bytes());
    }
}

#[test]
fn a_hundred_thousand_hostile_inputs_never_panic() {
    let mut rng = Rng::new(0x5EED);
    let seeds = seeds();
    let mut inputs = 0u64;
    let mut decoded_ok = 0usize;
    // 1. random bytes, sometimes starting with a real header so the deep paths run
    for _ in 0..40_000 {
        let len = rng.below(700) as usize;
        let mut b: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        match rng.below(4) {
            0 if len >= 300 => {
                b[..4].copy_from_slice(&[0x55, 0xAA, 0xEB, 0x90]);
                b[4] = [1, 2, 3, 5][rng.below(4) as usize];
            }
            1 if len >= 21 => {
                b[..2].copy_from_slice(&[0x4E, 0x57]);
                b[2..4].copy_from_slice(&((len - 2) as u16).to_be_bytes());
                b[10] = 1;
            }
            _ => {}
        }
        repair(&mut b);
        decoded_ok += all_decoders(&b);
        assemble(&b, &mut rng);
        inputs += 1;
    }
    // 2. truncated real frames
    for _ in 0..30_000 {
        let seed = &seeds[rng.below(seeds.len() as u64) as usize];
        let cut = rng.below(seed.len() as u64 + 1) as usize;
        decoded_ok += all_decoders(&seed[..cut]);
        assemble(&seed[..cut], &mut rng);
        inputs += 1;
    }
    // 3. bit-flipped real frames, checksum repaired half of the time
    for _ in 0..35_000 {
        let mut b = seeds[rng.below(seeds.len() as u64) as usize].clone();
        if b.is_empty() {
            continue;
        }
        for _ in 0..=rng.below(8) {
            let i = rng.below(b.len() as u64) as usize;
            b[i] ^= 1 << rng.below(8);
        }
        if rng.below(2) == 0 {
            repair(&mut b);
        }
        decoded_ok += all_decoders(&b);
        assemble(&b, &mut rng);
        inputs += 1;
    }
    assert!(inputs >= 100_000, "{inputs} inputs");
    // the damaged-but-repaired inputs must reach the decoders, not stop at the checks
    assert!(
        decoded_ok > 10_000,
        "only {decoded_ok} inputs got past the envelope checks"
    );
    eprintln!("{inputs} hostile inputs, {decoded_ok} decoder runs got past the envelope checks");
}
