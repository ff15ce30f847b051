//! `harness up|down|image|exports`: the main job.
//!
//! `up` builds everything (static binaries, example pvrexports, the
//! appengine-lite image), boots it with every example under a fixed name,
//! waits for READY and the links, and prints the mesh with the commands to
//! look around; `down` removes it.

use std::time::{Duration, Instant};

use anyhow::Result;
use clap::{Parser, Subcommand};
use harness::appengine::logs::{fresh_result, last_result};
use harness::appengine::{self, Appengine, BootOptions, Examples};
use harness::config::Config;
use harness::{docker, examples, image, util};

/// Name of the appengine `up` leaves running.
const UP_NAME: &str = "pv-appengine-lite-up";

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
            if Appengine::remove_named(UP_NAME)? {
                util::note(format!("removed {UP_NAME}"));
            } else {
                util::note(format!("{UP_NAME} was not running"));
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
    if Appengine::remove_named(UP_NAME)? {
        util::note(format!("removed the previous {UP_NAME}"));
    }
    let ae = Appengine::boot(BootOptions {
        group: "up".into(),
        examples: Examples::All,
        wait_ready: true,
        persistent_name: Some(UP_NAME.into()),
        ..Default::default()
    })?;
    let graph = ae.graph()?;
    let step = util::Step::start(format!("waiting for {} links", graph.len()));
    let mut rows = Vec::new();
    let mut marks = Vec::new();
    for link in &graph {
        let consumer = link["consumer"].as_str().unwrap_or("?").to_string();
        let name = link["name"].as_str().unwrap_or("?").to_string();
        let injected = ae.wait_link(&consumer, &name, link_timeout).is_ok();
        marks.push(ae.console_log(&consumer).len());
        rows.push([
            consumer,
            name,
            link["type"].as_str().unwrap_or("?").to_string(),
            if injected { "yes" } else { "NO" }.to_string(),
            String::new(),
        ]);
    }
    step.done("");
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
    if rows.iter().any(|r| r[3] == "NO") {
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
