//! Starts EAL for real (2 MiB hugepages, two loopback `net_ring` vdevs),
//! injects a known set of packets and forwards them port 0 <-> port 1, then
//! checks every counter. EAL initialises once per process, so this file has
//! a single test function.

mod common;

use std::collections::BTreeSet;

use dpdk::{Burst, DpdkError, Eal, Mempool, Port, PortConfig};

const INJECT: u32 = 100;
const FORWARD: u64 = 100_000;

#[test]
fn eal_ports_mbufs_and_forwarding() {
    let Some(huge) = common::hugepages(128) else {
        return;
    };
    let eal = Eal::init(common::eal_args(
        &huge,
        "eal-fwd",
        &["net_ring0", "net_ring1"],
    ))
    .expect("rte_eal_init");
    assert!(matches!(
        Eal::init(vec![]),
        Err(DpdkError::EalAlreadyInitialized)
    ));
    assert_eq!(eal.port_count(), 2);
    assert!(matches!(
        Port::open(&eal, 7),
        Err(DpdkError::NoSuchPort {
            port: 7,
            available: 2
        })
    ));

    let pool = Mempool::pktmbuf_pool(&eal, "test_pool", 1023, 32, 2176, None).unwrap();
    let err = Mempool::pktmbuf_pool(&eal, "test_pool", 1023, 32, 2176, None).unwrap_err();
    assert!(
        err.to_string().contains("test_pool") && err.to_string().contains("rte_errno"),
        "{err}"
    );

    // Single mbuf accessors, implemented over the raw fields.
    let mut m = pool.alloc().unwrap();
    assert_eq!((m.len(), m.data_len(), m.segments()), (0, 0, 1));
    assert_eq!(m.headroom(), 128); // RTE_PKTMBUF_HEADROOM
    let tail = m.tailroom();
    m.append(60).unwrap().copy_from_slice(&[7u8; 60]);
    assert_eq!(
        (m.len(), m.data(), m.tailroom()),
        (60, &[7u8; 60][..], tail - 60)
    );
    m.trim(20);
    assert_eq!(m.len(), 40);
    assert!(matches!(
        m.append(100_000),
        Err(DpdkError::NoTailroom {
            wanted: 100_000,
            ..
        })
    ));
    assert_eq!(pool.in_use_count(), 1);
    drop(m);
    assert_eq!(pool.in_use_count(), 0);

    let mut p0 = Port::by_name(&eal, "net_ring0").unwrap();
    let mut p1 = Port::by_name(&eal, "net_ring1").unwrap();
    assert_eq!((p0.id(), p1.id()), (0, 1));
    for p in [&mut p0, &mut p1] {
        p.setup(&PortConfig::default(), &pool).unwrap();
        p.start().unwrap();
        p.mac().unwrap();
    }

    // Inject INJECT numbered packets on port 0; net_ring ports loop tx back
    // to their own rx.
    let mut burst: Burst<32> = Burst::new();
    let mut seq = 0u32;
    while seq < INJECT {
        let n = (INJECT - seq).min(32) as usize;
        pool.alloc_bulk(&mut burst, n).unwrap();
        for m in burst.as_mut_slice() {
            m.append(64).unwrap()[..4].copy_from_slice(&seq.to_be_bytes());
            seq += 1;
        }
        assert_eq!(p0.tx_burst(0, &mut burst), n);
        assert!(burst.is_empty());
    }
    assert_eq!(pool.in_use_count(), INJECT);

    // io forwarding until FORWARD packets went across.
    let mut forwarded = 0u64;
    while forwarded < FORWARD {
        for (rx, tx) in [(&p0, &p1), (&p1, &p0)] {
            rx.rx_burst(0, &mut burst);
            forwarded += tx.tx_burst(0, &mut burst) as u64;
            assert!(burst.is_empty(), "loopback ring refused packets");
        }
    }

    // Drain: every injected packet is still in flight, none lost or doubled.
    let mut seen = BTreeSet::new();
    for p in [&p0, &p1] {
        while p.rx_burst(0, &mut burst) > 0 {
            for m in burst.as_slice() {
                assert_eq!(m.len(), 64);
                assert!(seen.insert(u32::from_be_bytes(m.data()[..4].try_into().unwrap())));
            }
            burst.clear();
        }
    }
    assert_eq!(seen, (0..INJECT).collect());
    assert_eq!(pool.in_use_count(), 0);

    let (s0, s1) = (p0.stats().unwrap(), p1.stats().unwrap());
    assert_eq!(s0.opackets + s1.opackets, u64::from(INJECT) + forwarded);
    assert_eq!(s0.ipackets + s1.ipackets, u64::from(INJECT) + forwarded);
    // net_ring counts packets, not bytes.
    assert_eq!(s0.ierrors + s1.ierrors + s0.oerrors + s1.oerrors, 0);

    // A vdev created after init becomes a third port.
    eal.vdev_init("net_null9", "").unwrap();
    assert_eq!(eal.port_count(), 3);

    drop((p0, p1));
    drop(pool);
    drop(eal);
}
