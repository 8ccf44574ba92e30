//! Generates the kubelet pod-resources API client (and, for the tests' fake
//! kubelet, its server) from `proto/podresources.proto` with the protoc
//! shipped in `protoc-bin-vendored`: no system protobuf compiler needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // prost-build runs the compiler named by PROTOC.
    std::env::set_var("PROTOC", protoc);
    println!("cargo:rerun-if-changed=proto/podresources.proto");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_protos(&["proto/podresources.proto"], &["proto"])?;
    Ok(())
}
