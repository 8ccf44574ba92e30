//! `dpdk-fwd`: io forwarding between ports 0 and 1 (port 0 rx -> port 1 tx and
//! back), like `dpdk-testpmd --forward-mode=io`, in bursts of 32.
//!
//! EAL arguments come from pod discovery (`dpdk::discover`) unless given with
//! `--eal-args "..."` or after `--`. Prints a `stats:` line per stats period
//! (from the ports' own counters) and a final `fwd-result:` line of
//! `key=value` pairs.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use dpdk::discover::{self, Inputs};
use dpdk::{Burst, Eal, Mempool, Port, PortConfig, PortStats};

const USAGE: &str = "usage: dpdk-fwd [--duration SECS] [--packets N] [--stats-period SECS]
                [--mbufs N] [--mem-mb MIB] [--inject N]
                [--eal-args \"EAL ARGS\"] [-- EAL ARGS...]
  --duration SECS      stop after SECS seconds
  --packets N          stop once N packets were forwarded
  --stats-period SECS  print a stats line every SECS seconds (0: never; default 1)
  --mbufs N            mbufs in the pool (default 8191)
  --mem-mb MIB         hugepage memory per device NUMA node for discovery (default 256)
  --inject N           send N packets on port 0 at start (for loopback vdevs such as net_ring)
  --eal-args ARGS      EAL arguments (whitespace-separated) instead of discovery
  -- ARGS...           EAL arguments instead of discovery";

const BURST: usize = 32;

#[derive(Debug)]
struct Options {
    duration: Option<Duration>,
    packets: Option<u64>,
    stats_period: Duration,
    mbufs: u32,
    mem_mb: u64,
    inject: u32,
    eal_args: Option<Vec<String>>,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut o = Options {
        duration: None,
        packets: None,
        stats_period: Duration::from_secs(1),
        mbufs: 8191,
        mem_mb: discover::DEFAULT_MEM_MB,
        inject: 0,
        eal_args: None,
    };
    fn value<T: std::str::FromStr>(flag: &str, v: Option<String>) -> Result<T, String> {
        let v = v.ok_or_else(|| format!("{flag} needs a value"))?;
        v.parse().map_err(|_| format!("{flag}: bad value {v:?}"))
    }
    while let Some(a) = args.next() {
        match a.as_str() {
            "--duration" => {
                o.duration = Some(Duration::from_secs_f64(value("--duration", args.next())?))
            }
            "--packets" => o.packets = Some(value("--packets", args.next())?),
            "--stats-period" => {
                o.stats_period = Duration::from_secs_f64(value("--stats-period", args.next())?)
            }
            "--mbufs" => o.mbufs = value("--mbufs", args.next())?,
            "--mem-mb" => o.mem_mb = value("--mem-mb", args.next())?,
            "--inject" => o.inject = value("--inject", args.next())?,
            "--eal-args" => {
                let v: String = value("--eal-args", args.next())?;
                o.eal_args = Some(v.split_whitespace().map(str::to_owned).collect());
            }
            "--" => o.eal_args = Some(args.by_ref().collect()),
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(o)
}

fn main() -> ExitCode {
    let opts = match parse_args(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    match run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dpdk-fwd: {e}");
            ExitCode::FAILURE
        }
    }
}

fn eal_args(opts: &Options) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    if let Some(a) = &opts.eal_args {
        return Ok(a.clone());
    }
    let mut inputs = Inputs::from_process();
    inputs.mem_mb = opts.mem_mb;
    let plan = discover::discover(&inputs)?;
    for note in &plan.notes {
        println!("discovery: {note}");
    }
    for d in &plan.devices {
        let numa = d.numa_node.map_or("unknown".to_string(), |n| n.to_string());
        println!(
            "discovery: device {} (NUMA node {numa}) from {}",
            d.kind, d.origin
        );
    }
    Ok(plan.args())
}

fn run(opts: &Options) -> Result<(), Box<dyn std::error::Error>> {
    let args = eal_args(opts)?;
    println!("eal-args: {}", args.join(" "));
    let eal = Eal::init(args)?;
    if eal.port_count() < 2 {
        return Err(format!("need 2 ethdev ports, EAL found {}", eal.port_count()).into());
    }
    let mut p0 = Port::open(&eal, 0)?;
    let mut p1 = Port::open(&eal, 1)?;
    // Packet memory on the NUMA node of the first port, as testpmd does.
    let pool = Mempool::pktmbuf_pool(&eal, "fwd_pool", opts.mbufs, 256, 2176, p0.socket_id())?;
    for p in [&mut p0, &mut p1] {
        p.setup(&PortConfig::default(), &pool)?;
        p.start()?;
        // Forwarding must see every frame, whatever its destination MAC.
        let _ = p.promiscuous_enable();
        let m = p.mac()?;
        println!(
            "port {}: mac {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x} socket {:?}",
            p.id(),
            m[0],
            m[1],
            m[2],
            m[3],
            m[4],
            m[5],
            p.socket_id()
        );
    }
    let injected = inject(&p0, &pool, opts.inject)?;

    let base = [p0.stats()?, p1.stats()?];
    let started = Instant::now();
    let mut last = (started, base);
    let mut burst: Burst<BURST> = Burst::new();
    let (mut forwarded, mut dropped) = (0u64, 0u64);
    let limit = opts.packets.unwrap_or(u64::MAX);
    let mut iter = 0u32;
    loop {
        for (rx, tx) in [(&p0, &p1), (&p1, &p0)] {
            if rx.rx_burst(0, &mut burst) == 0 {
                continue;
            }
            forwarded += tx.tx_burst(0, &mut burst) as u64;
            if !burst.is_empty() {
                // As testpmd: what the tx queue did not take is dropped.
                dropped += burst.len() as u64;
                burst.clear();
            }
        }
        if forwarded >= limit {
            break;
        }
        iter = iter.wrapping_add(1);
        // Reading the clock costs ~20 ns: once per 256 rounds is enough.
        if iter % 256 != 0 {
            continue;
        }
        let now = Instant::now();
        if opts.duration.is_some_and(|d| now - started >= d) {
            break;
        }
        if !opts.stats_period.is_zero() && now - last.0 >= opts.stats_period {
            let cur = [p0.stats()?, p1.stats()?];
            print_stats(now - started, now - last.0, &last.1, &cur);
            last = (now, cur);
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let end = [p0.stats()?, p1.stats()?];
    let rx: u64 = (0..2).map(|i| end[i].ipackets - base[i].ipackets).sum();
    let tx: u64 = (0..2).map(|i| end[i].opackets - base[i].opackets).sum();
    println!(
        "fwd-result: seconds={secs:.3} forwarded={forwarded} dropped={dropped} rx={rx} tx={tx} injected={injected} pps={:.0}",
        forwarded as f64 / secs
    );
    drop((p0, p1));
    drop(pool);
    drop(eal);
    Ok(())
}

/// Put `n` 64-byte frames on port 0's tx queue to start loopback traffic.
fn inject(port: &Port<'_>, pool: &Mempool<'_>, n: u32) -> Result<u32, Box<dyn std::error::Error>> {
    let mut sent = 0;
    let mut burst: Burst<BURST> = Burst::new();
    while sent < n {
        let want = (n - sent).min(BURST as u32) as usize;
        pool.alloc_bulk(&mut burst, want)?;
        for (i, m) in burst.as_mut_slice().iter_mut().enumerate() {
            let frame = m.append(64)?;
            frame.fill(0);
            frame[..6].fill(0xff); // broadcast destination
            frame[12..14].copy_from_slice(&[0x88, 0xb5]); // local experimental ethertype
            frame[14..18].copy_from_slice(&(sent + i as u32).to_be_bytes());
        }
        let mut tries = 0;
        while !burst.is_empty() && tries < 1000 {
            sent += port.tx_burst(0, &mut burst) as u32;
            tries += 1;
        }
        if !burst.is_empty() {
            return Err(format!(
                "port {} tx queue full after {sent} injected packets",
                port.id()
            )
            .into());
        }
    }
    Ok(sent)
}

fn print_stats(t: Duration, dt: Duration, prev: &[PortStats; 2], cur: &[PortStats; 2]) {
    let secs = dt.as_secs_f64();
    let pps = |a: u64, b: u64| (a - b) as f64 / secs;
    let rx: Vec<f64> = (0..2)
        .map(|i| pps(cur[i].ipackets, prev[i].ipackets))
        .collect();
    let tx: Vec<f64> = (0..2)
        .map(|i| pps(cur[i].opackets, prev[i].opackets))
        .collect();
    println!(
        "stats: t={:.1} rx-pps={:.0} tx-pps={:.0} port0-rx-pps={:.0} port1-rx-pps={:.0} port0-tx-pps={:.0} port1-tx-pps={:.0}",
        t.as_secs_f64(),
        rx[0] + rx[1],
        tx[0] + tx[1],
        rx[0],
        rx[1],
        tx[0],
        tx[1]
    );
}
