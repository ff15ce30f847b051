//! `harness up|down|image|exports`: the main job.
//!
//! `up` builds everything (static binaries, example pvrexports, the
//! appengine-lite image, or takes the real image `PV_APPENGINE_IMAGE` /
//! `PV_APPENGINE_TAR` names), boots it with every example under a fixed
//! name (`pv-appengine-lite-up`, or `pv-appengine-up` for a real image),
//! waits for READY and then for all links at once, and prints the mesh
//! with the commands to look around; `down` removes it.

use std::time::{Duration, Instant};

use anyhow::Result;
use clap::{Parser, Subcommand};
use harness::appengine::logs::{fresh_result, last_result};
use harness::appengine::{self, Appengine, BootOptions, Examples};
use harness::config::Config;
use harness::image::ImageKind;
use harness::{docker, examples, image, util};
use serde_json::Value;

/// Name of the appengine `up` leaves running, by image kind: a real
/// Pantavisor image is not appengine-lite.
fn up_name(kind: ImageKind) -> &'static str {
    match kind {
        ImageKind::Lite => "pv-appengine-lite-up",
        ImageKind::Real => "pv-appengine-up",
    }
}

#[derive(Parser)]
#[command(about = "Boot Pantavisor's appengine in Docker with the pv-xconnect examples")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build everything, boot the appengine with all examples, show the mesh.
    Up {
        /// Seconds to wait for each link to be injected.
        #[arg(long, default_value_t = 60)]
        link_timeout: u64,
    },
    /// Remove the appengine `up` started.
    Down,
    /// Build (or find) the appengine image and print its reference.
    Image,
    /// Build the example pvrexports and print their paths.
    Exports,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let start = Instant::now();
    match cli.cmd {
        Cmd::Up { link_timeout } => up(Duration::from_secs(link_timeout))?,
        Cmd::Down => {
            // Whichever `up` booted, whatever the environment says now.
            let mut removed = false;
            for kind in [ImageKind::Lite, ImageKind::Real] {
                let name = up_name(kind);
                if Appengine::remove_named(name)? {
                    util::note(format!("removed {name}"));
                    removed = true;
                }
            }
            if !removed {
                util::note("no appengine of `up` was running");
            }
        }
        Cmd::Image => {
            let config = Config::get()?;
            let d = docker::block_on(docker::connect())?;
            let img = docker::block_on(image::ensure(config, &d))?;
            println!("{}", img.reference);
        }
        Cmd::Exports => {
            let config = Config::get()?;
            harness::binaries::build(config)?;
            for b in examples::build_exports(config, &examples::discover()?)? {
                println!("{}", b.path.display());
            }
        }
    }
    util::note(format!("total {:.1} s", start.elapsed().as_secs_f64()));
    Ok(())
}

fn up(link_timeout: Duration) -> Result<()> {
    let name = up_name(Config::get()?.appengine.kind());
    if Appengine::remove_named(name)? {
        util::note(format!("removed the previous {name}"));
    }
    let ae = Appengine::boot(BootOptions {
        group: "up".into(),
        examples: Examples::All,
        wait_ready: true,
        persistent_name: Some(name.into()),
        ..Default::default()
    })?;
    let graph = ae.graph()?;
    let step = util::Step::start(format!("waiting for {} links", graph.len()));
    let verdicts = wait_links(&ae, &graph, link_timeout);
    step.done("");
    let mut rows = Vec::new();
    let mut marks = Vec::new();
    for (link, verdict) in graph.iter().zip(verdicts) {
        let consumer = link["consumer"].as_str().unwrap_or("?").to_string();
        marks.push(ae.console_log(&consumer).len());
        rows.push([
            consumer,
            link["name"].as_str().unwrap_or("?").to_string(),
            link["type"].as_str().unwrap_or("?").to_string(),
            verdict,
            String::new(),
        ]);
    }
    // Clients start with their containers, before their links exist, and
    // retry every 5 s: show the first result each one reports after its
    // link was injected, not its start-up failure.
    let step = util::Step::start("waiting for each client's next result");
    let deadline = std::time::Instant::now() + CLIENT_RESULT_WAIT;
    loop {
        let mut all_fresh = true;
        for (row, mark) in rows.iter_mut().zip(&marks) {
            let log = ae.console_log(&row[0]);
            match fresh_result(&log, *mark) {
                Some(r) => row[4] = r,
                None => {
                    all_fresh = false;
                    row[4] = last_result(&log);
                }
            }
        }
        if all_fresh || std::time::Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    step.done("");
    if rows.iter().any(|r| r[3] != "yes") {
        eprintln!("{}", ae.diagnostics());
    }
    print_table(
        &[
            "consumer",
            "service",
            "type",
            "injected?",
            "last client result",
        ],
        &rows,
    );
    // Without it the input provider has no keyboard to export: say why
    // its row fails rather than leave it looking like a daemon fault.
    let uinput_less = graph
        .iter()
        .filter_map(|l| l["provider"].as_str())
        .find(|p| examples::NEEDS_UINPUT.contains(p));
    if let Some(provider) = uinput_less.filter(|_| ae.sh("test -c /dev/uinput").is_err()) {
        println!();
        println!(
            "This host has no /dev/uinput: {} cannot make the keyboard it exports, so that \
             link fails (device not found); it is injected where the appengine has /dev/uinput.",
            provider
        );
    }
    let n = ae.name.clone();
    println!();
    println!("Look around:");
    println!("  docker exec {n} pvcontrol ls");
    println!("  docker exec {n} pvcontrol graph ls");
    println!("  docker exec {n} pvcontrol daemons ls");
    println!("  docker exec {n} pv-xconnect status");
    println!(
        "  docker exec {n} tail -f {}/logs/0/pantavisor/pantavisor.log",
        appengine::STORAGE
    );
    for c in &ae.installed {
        println!(
            "  docker exec {n} cat {}/logs/0/{c}/lxc/console.log",
            appengine::STORAGE
        );
    }
    println!("  cargo run -p harness -- down");
    ae.detach();
    Ok(())
}

/// Waits for every link of `graph` at once, under one deadline; returns
/// each one's verdict for the table: `yes`, or `NO` with why. A link stops
/// being awaited as soon as it is injected or cannot come any more: its
/// consumer or provider stopped, or our pv-xconnect (where its status
/// socket answers) reports its type unsupported. Links still waiting at
/// the deadline get the last reason seen (the daemon's, if it has one).
fn wait_links(ae: &Appengine, graph: &[Value], timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    let mut verdicts: Vec<Option<String>> = vec![None; graph.len()];
    let mut last_why: Vec<String> = vec!["not injected".into(); graph.len()];
    loop {
        let now_graph = ae.graph().unwrap_or_default();
        let stopped: Vec<String> = ae
            .containers()
            .unwrap_or_default()
            .iter()
            .filter(|c| c["status"] == "STOPPED")
            .filter_map(|c| c["name"].as_str().map(str::to_string))
            .collect();
        let daemon = ae.xconnect_links().unwrap_or_default();
        for (i, link) in graph.iter().enumerate() {
            if verdicts[i].is_some() {
                continue;
            }
            let consumer = link["consumer"].as_str().unwrap_or("?");
            let provider = link["provider"].as_str().unwrap_or("?");
            let name = link["name"].as_str().unwrap_or("?");
            match ae.link_injected(&now_graph, consumer, name) {
                Ok(_) => {
                    verdicts[i] = Some("yes".into());
                    continue;
                }
                Err(e) => last_why[i] = format!("{e:#}"),
            }
            let reported = daemon
                .iter()
                .find(|d| d["consumer"] == consumer && d["name"] == name);
            if let Some(d) = reported {
                let state = d["state"].as_str().unwrap_or("?");
                last_why[i] = match d["reason"].as_str() {
                    Some(r) => format!("{state}: {r}"),
                    None => state.to_string(),
                };
                if state == "unsupported" {
                    verdicts[i] = Some(format!("NO ({})", last_why[i]));
                }
            }
            if let Some(c) = [consumer, provider]
                .into_iter()
                .find(|c| stopped.iter().any(|s| s == c))
            {
                verdicts[i] = Some(format!("NO ({c} stopped)"));
            }
        }
        if verdicts.iter().all(Option::is_some) || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    verdicts
        .into_iter()
        .zip(last_why)
        .map(|(v, why)| v.unwrap_or_else(|| format!("NO ({why})")))
        .map(|v| v.chars().take(80).collect())
        .collect()
}

/// Long enough for every example client's 5 s retry loop to come round.
const CLIENT_RESULT_WAIT: Duration = Duration::from_secs(15);

fn print_table(head: &[&str], rows: &[[String; 5]]) {
    let mut w: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let s: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = w[i]))
            .collect();
        println!("{}", s.join("  ").trim_end());
    };
    line(head.to_vec());
    line(
        w.iter()
            .map(|n| "-".repeat(*n))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect(),
    );
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
    if rows.is_empty() {
        println!("(no links in the graph)");
    }
}
