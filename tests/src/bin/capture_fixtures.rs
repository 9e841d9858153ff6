//! `kubecast-capture-fixtures [--out DIR] [FILE…]`: records the fixtures of
//! `tests/fixtures/` again with the real kubectl on the PATH (all of them,
//! or only the named files). See `tests/fixtures/README.md`.

use std::path::PathBuf;

use kubecast_tests::fixtures::{fixtures_dir, record, FIXTURES};
use kubecast_tests::kubectl::find_kubectl;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut out_dir = fixtures_dir();
    let mut only = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--out" => match args.next() {
                Some(dir) => out_dir = PathBuf::from(dir),
                None => fail("--out needs a directory"),
            },
            name if FIXTURES.iter().any(|f| f.file == name) => only.push(name.to_string()),
            other => fail(&format!("unknown argument or fixture {other:?}")),
        }
    }
    let Some(kubectl) = find_kubectl() else {
        fail("kubectl is not on the PATH (tests/install-deps.sh installs it)");
    };
    if let Err(e) = std::fs::create_dir_all(&out_dir) {
        fail(&format!("cannot create {}: {e}", out_dir.display()));
    }
    for fixture in FIXTURES
        .iter()
        .filter(|f| only.is_empty() || only.iter().any(|o| o == f.file))
    {
        let bytes = record(&kubectl, fixture).await;
        let path = out_dir.join(fixture.file);
        if let Err(e) = std::fs::write(&path, &bytes) {
            fail(&format!("cannot write {}: {e}", path.display()));
        }
        println!("{}: {} bytes", path.display(), bytes.len());
    }
}

fn fail(message: &str) -> ! {
    eprintln!("kubecast-capture-fixtures: {message}");
    std::process::exit(2);
}
