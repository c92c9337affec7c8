fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["cairn/meta.proto", "cairn/raft.proto", "cairn/drive.proto"];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["."])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .bytes(".cairn.drive.v1")
        .compile_fds(fds)?;
    Ok(())
}
