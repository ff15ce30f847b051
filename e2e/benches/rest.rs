//! `rest` link overhead: keep-alive `GET /info` request rate and latency
//! through a rest link (the daemon's accept loop and `link::rest`) versus straight to the provider socket, in one
//! run. The provider (the example REST server) and the proxy run on their
//! own runtimes (one worker each), the client on the bench's main thread.
//!
//! `cargo bench -p pv-e2e --bench rest` (release build); set
//! `REST_BENCH_REQUESTS` to change the request count per connection.

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use pv_e2e::rest::{self, Provider};

struct Figures {
    rps: f64,
    p50: Duration,
    p99: Duration,
}

/// `conns` keep-alive connections, each sending `n` sequential requests.
async fn run(socket: &Path, conns: usize, n: usize) -> anyhow::Result<Figures> {
    let mut tasks = Vec::new();
    let started = Instant::now();
    for _ in 0..conns {
        let socket = socket.to_path_buf();
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::UnixStream::connect(&socket).await?;
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
                    .await?;
            tokio::spawn(conn);
            let mut lat = Vec::with_capacity(n);
            for _ in 0..n {
                let req = http::Request::get("/info")
                    .header("host", "localhost")
                    .body(Empty::new())?;
                let t = Instant::now();
                sender.ready().await?;
                let res = sender.send_request(req).await?;
                let body = res.into_body().collect().await?.to_bytes();
                lat.push(t.elapsed());
                anyhow::ensure!(body.starts_with(b"{\"service\""), "bad answer");
            }
            anyhow::Ok(lat)
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await??);
    }
    let elapsed = started.elapsed();
    lat.sort();
    Ok(Figures {
        rps: lat.len() as f64 / elapsed.as_secs_f64(),
        p50: lat[lat.len() / 2],
        p99: lat[lat.len() * 99 / 100],
    })
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs us too:
    // keep that quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::var("REST_BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 200 } else { 20_000 });

    let dir = tempfile::tempdir()?;
    let provider = Provider::start(dir.path());
    let proxy_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let proxy = proxy_rt.block_on(rest::proxy(
        dir.path(),
        &provider.path,
        "bench-consumer",
        "",
    ));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;

    println!("rest link benchmark: GET /info, {n} requests per keep-alive connection");
    for conns in [1usize, 4] {
        rt.block_on(run(&provider.path, conns, n / 10))?; // warm-up
        rt.block_on(run(&proxy.path, conns, n / 10))?;
        let direct = rt.block_on(run(&provider.path, conns, n))?;
        let proxied = rt.block_on(run(&proxy.path, conns, n))?;
        for (label, f) in [("direct", &direct), ("proxied", &proxied)] {
            println!(
                "  {conns} conn  {label:8} {:>9.0} req/s  p50 {:>7.1} us  p99 {:>7.1} us",
                f.rps,
                f.p50.as_secs_f64() * 1e6,
                f.p99.as_secs_f64() * 1e6
            );
        }
        println!(
            "  {conns} conn  proxied/direct = {:.2}x requests/s",
            proxied.rps / direct.rps
        );
    }
    drop(proxy);
    proxy_rt.shutdown_background();
    Ok(())
}
