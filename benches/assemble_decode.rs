//! Assemble + decode of a JK02_32S cell-info frame fed in 20-byte chunks (the worst common
//! fragmentation), against a baseline measured in the same run: the sum8 checksum of the same
//! 300 bytes, the least work any decoder must do. `cargo bench --bench assemble_decode`.
//!
//! Then what one InfluxDB point of a battery costs (its line, its 16 cells' and its probes'
//! lines, and those gzipped as a write sends them), against the decoding of the frame it came
//! from, measured in the same run.

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

fn influx(c: &mut Criterion) {
    use jkmon::battery::{Snapshot, SocSource};
    use jkmon::influx::line;
    use jkmon::report::json::SnapshotJson;
    use std::io::Write;
    let frame = frame();
    let cell_info = jkmon::protocol::cell_info::decode(&frame, None).unwrap();
    let snapshot = Snapshot {
        soc_effective_pct: cell_info.soc_pct.map(f64::from),
        soc_source: SocSource::Bms,
        cell_info,
        device_info: None,
        settings: None,
    };
    let who = line::Battery {
        position: 1,
        name: "Garage",
        serial: Some("4022"),
    };
    let at = chrono::Utc::now();
    let lines = || line::battery(who, &SnapshotJson::new(&snapshot), at);
    let mut g = c.benchmark_group("influx_point");
    g.throughput(Throughput::Elements(1));
    g.bench_function("baseline_decode_the_frame", |b| {
        b.iter(|| {
            jkmon::protocol::cell_info::decode(black_box(&frame), None).map(|c| c.cell_count())
        })
    });
    g.bench_function("battery_cells_probes_lines", |b| {
        b.iter(|| {
            let l = lines();
            assert!(l.len() > 16);
            l
        })
    });
    g.bench_function("lines_gzipped", |b| {
        b.iter(|| {
            let body = lines().join("\n");
            let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            z.write_all(body.as_bytes()).unwrap();
            z.finish().unwrap().len()
        })
    });
    g.finish();
}

criterion_group!(benches, bench, influx);
criterion_main!(benches);
