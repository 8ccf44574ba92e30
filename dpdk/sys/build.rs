//! Generate bindings to the system DPDK and compile C wrappers for its
//! `static inline` fast-path functions.

use std::env;
use std::path::PathBuf;

/// Flags Debian's `libdpdk.pc` puts in Cflags that the pkg-config crate drops
/// (it keeps only `-I`/`-D`): without `rte_config.h` the headers do not
/// compile, and without `-march=corei7` the SSE4.2 inlines (`rte_memcpy`, CRC)
/// are rejected.
const EXTRA_CFLAGS: &[&str] = &["-include", "rte_config.h", "-march=corei7"];

/// Types whose packed-and-aligned layout bindgen cannot reproduce in Rust; none
/// is used by the safe API.
const OPAQUE: &[&str] = &[
    "rte_l2tpv2_.*",
    "rte_gtp_psc_.*",
    "rte_arp_.*",
    "rte_ecpri_.*",
    "rte_flow_item_l2tpv2",
    "rte_flow_item_gtp_psc",
    "rte_flow_item_arp_eth_ipv4",
    "rte_flow_item_ecpri",
];

const ALLOW_FUNCTIONS: &[&str] = &[
    "rte_eal_.*",
    "rte_eth_.*",
    "rte_pktmbuf_.*",
    "rte_mempool_.*",
    "rte_mbuf_.*",
    "rte_lcore.*",
    "rte_get_main_lcore",
    "rte_socket_id",
    "rte_strerror",
    "rte_ring_.*",
    "rte_vdev_.*",
    "rte_exit",
    "rte_get_tsc_hz",
];

fn main() {
    println!("cargo:rerun-if-changed=wrapper.h");
    println!("cargo:rerun-if-changed=shim.c");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");

    let dpdk = pkg_config::Config::new()
        .atleast_version("22.11")
        // Link flags are emitted below, after checking them.
        .cargo_metadata(false)
        .probe("libdpdk")
        .expect("pkg-config libdpdk (install libdpdk-dev and pkg-config)");

    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let includes: Vec<String> = dpdk
        .include_paths
        .iter()
        .map(|p| format!("-I{}", p.display()))
        .collect();

    let mut builder = bindgen::Builder::default()
        .header("wrapper.h")
        .clang_args(&includes)
        .clang_args(EXTRA_CFLAGS)
        .use_core()
        .derive_default(true)
        .layout_tests(false)
        .generate_comments(false)
        .prepend_enum_name(false)
        .wrap_static_fns(true)
        .wrap_static_fns_path(out.join("static_fns"))
        .allowlist_var("RTE_.*")
        .allowlist_var("SOCKET_ID_ANY")
        .allowlist_type("rte_eth_.*")
        .allowlist_type("rte_mbuf.*")
        .allowlist_type("rte_mempool.*")
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()));
    for f in ALLOW_FUNCTIONS {
        builder = builder.allowlist_function(f);
    }
    for t in OPAQUE {
        builder = builder.opaque_type(t);
    }
    let bindings = builder.generate().expect("bindgen on the DPDK headers");
    bindings
        .write_to_file(out.join("bindings.rs"))
        .expect("write bindings.rs");

    // bindgen writes `static_fns.c`: one exported `<name>__extern` wrapper per
    // allowlisted `static inline` function, including wrapper.h by path.
    let mut cc = cc::Build::new();
    cc.file(out.join("static_fns.c"))
        .file("shim.c")
        .include(env::current_dir().unwrap())
        .opt_level(3)
        .warnings(false);
    for p in &dpdk.include_paths {
        cc.include(p);
    }
    for f in EXTRA_CFLAGS {
        cc.flag(f);
    }
    cc.compile("dpdk_sys_inline");

    for p in &dpdk.link_paths {
        println!("cargo:rustc-link-search=native={}", p.display());
    }
    for lib in &dpdk.libs {
        println!("cargo:rustc-link-lib=dylib={lib}");
    }
    // rte_vdev_init lives in the vdev bus driver, not in libdpdk.pc's list.
    // The net_ring/net_null/af_packet PMDs need no link flag: EAL dlopens
    // every driver in its plugin dir (Debian: <libdir>/dpdk/pmds-<abi>).
    println!("cargo:rustc-link-lib=dylib=rte_bus_vdev");
}
