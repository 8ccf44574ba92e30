//! Micro-benchmarks of the per-burst and per-mbuf paths, with EAL started once
//! (2 MiB hugepages, `net_null` and `net_ring` vdevs, lcore 0).

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput};
use dpdk::{Burst, Eal, Mempool, Port, PortConfig};

fn main() {
    let Some(huge) = common::hugepages(128) else {
        return;
    };
    let eal = Eal::init(common::eal_args(
        &huge,
        "bench-burst",
        &["net_null0", "net_ring0"],
    ))
    .expect("rte_eal_init");
    let pool = Mempool::pktmbuf_pool(&eal, "bench_pool", 8191, 256, 2176, None).unwrap();
    let mut null = Port::by_name(&eal, "net_null0").unwrap();
    let mut ring = Port::by_name(&eal, "net_ring0").unwrap();
    for p in [&mut null, &mut ring] {
        p.setup(&PortConfig::default(), &pool).unwrap();
        p.start().unwrap();
    }

    let mut c = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));

    let mut g = c.benchmark_group("mbuf");
    g.throughput(Throughput::Elements(1));
    g.bench_function("alloc_free", |b| {
        b.iter(|| drop(black_box(pool.alloc().unwrap())))
    });
    g.throughput(Throughput::Elements(32));
    let mut burst: Burst<32> = Burst::new();
    g.bench_function("alloc_bulk_free_bulk_32", |b| {
        b.iter(|| {
            pool.alloc_bulk(&mut burst, 32).unwrap();
            burst.clear();
        })
    });
    pool.alloc_bulk(&mut burst, 32).unwrap();
    for m in burst.as_mut_slice() {
        m.append(64).unwrap().fill(1);
    }
    g.bench_function("accessors_32", |b| {
        b.iter(|| {
            let mut sum = 0usize;
            for m in black_box(&burst).as_slice() {
                sum += m.len() + m.data_len() + usize::from(m.data()[12]);
            }
            sum
        })
    });
    burst.clear();
    g.finish();

    let mut g = c.benchmark_group("burst");
    g.throughput(Throughput::Elements(32));
    // net_null rx allocates 32 mbufs, tx frees them.
    g.bench_function("net_null_rx_tx_32", |b| {
        b.iter(|| {
            null.rx_burst(0, &mut burst);
            null.tx_burst(0, &mut burst);
            burst.clear();
        })
    });
    // net_ring loops tx back to rx: no allocation, just the two burst calls.
    pool.alloc_bulk(&mut burst, 32).unwrap();
    g.bench_function("net_ring_tx_rx_32", |b| {
        b.iter(|| {
            ring.tx_burst(0, &mut burst);
            ring.rx_burst(0, &mut burst);
        })
    });
    burst.clear();
    g.finish();
    c.final_summary();
    drop((null, ring, burst));
    drop(pool);
    drop(eal);
}
