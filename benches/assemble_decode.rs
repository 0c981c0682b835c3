//! Assemble + decode of a JK02_32S cell-info frame fed in 20-byte chunks (the worst common
//! fragmentation), against a baseline measured in the same run: the sum8 checksum of the same
//! 300 bytes, the least work any decoder must do. `cargo bench --bench assemble_decode`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use jkmon::protocol::cell_info::{encode_jk02, JK02_32S};
use jkmon::protocol::checksum::sum8;
use jkmon::protocol::{Assembler, AssemblerConfig, Decoded, StreamDecoder, VariantChoice};
use jkmon::transport::sim::{Rng, SimBattery, SimConfig};
use std::hint::black_box;

fn frame() -> [u8; 300] {
    let mut rng = Rng::new(1);
    let mut b = SimBattery::new(&SimConfig::default(), &mut rng);
    b.step(60.0, &mut rng);
    encode_jk02(&b.cell_info(1), &JK02_32S)
}

fn bench(c: &mut Criterion) {
    let frame = frame();
    let mut g = c.benchmark_group("jk02_32s_cell_info");
    g.throughput(Throughput::Elements(1));
    g.bench_function("baseline_sum8_300_bytes", |b| {
        b.iter(|| sum8(black_box(&frame[..299])))
    });
    let mut assembler = Assembler::new(AssemblerConfig::ble());
    let mut decoder = StreamDecoder::new(VariantChoice::Auto);
    g.bench_function("assemble_and_decode_20_byte_chunks", |b| {
        b.iter(|| {
            let mut cells = 0;
            for chunk in black_box(&frame).chunks(20) {
                assembler.push(chunk);
                while let Some(item) = assembler.poll() {
                    if let Ok(Decoded::CellInfo(c)) = decoder.decode(&item) {
                        cells += c.cell_count();
                    }
                }
            }
            assert_eq!(cells, 16);
            cells
        })
    });
    g.bench_function("decode_only", |b| {
        b.iter_batched(
            || frame,
            |f| jkmon::protocol::cell_info::decode(&f, None).map(|c| c.cell_count()),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
