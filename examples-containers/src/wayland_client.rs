//! `pv-example-wayland-client`: consumer of `wayland-0`. Connects to
//! `WAYLAND_DISPLAY` (default the absolute `/run/wayland-0`, the link's
//! target), binds wl_compositor, wl_shm and xdg_wm_base, draws the known
//! pattern of [`crate::wayland_frame`] into a memfd shm pool, attaches,
//! commits, waits for the frame callback and prints
//! `wayland OK frame=<checksum>`. `--once` exits with the result; otherwise
//! it repeats every few seconds. Pure-Rust wayland-client, no libwayland.

use std::io::Write;
use std::os::fd::AsFd;
use std::time::Duration;

use crate::wayland_frame::{self, HEIGHT, WIDTH};
use anyhow::Context;
use clap::Parser;
use wayland_client::globals::{registry_queue_init, GlobalListContents};
use wayland_client::protocol::{
    wl_buffer, wl_callback, wl_compositor, wl_registry, wl_shm, wl_shm_pool, wl_surface,
};
use wayland_client::{Connection, Dispatch, QueueHandle};
use wayland_protocols::xdg::shell::client::{xdg_surface, xdg_toplevel, xdg_wm_base};

/// The link's target in the consumer container (upstream's manifest).
const DEFAULT_DISPLAY: &str = "/run/wayland-0";

#[derive(Parser)]
#[command(about = "Draws one frame through a Wayland compositor and checks it is presented")]
struct Args {
    /// Run once and exit 0 on success, 1 on failure.
    #[arg(long)]
    once: bool,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
}

#[derive(Default)]
struct State {
    configured: Option<u32>,
    frame_done: bool,
}

/// The program `pv-example-wayland-client` runs (arguments from the command line).
pub fn main() {
    let args = Args::parse();
    if let Err(e) = crate::pid1::exit_on_stop("pv-example-wayland-client", || {}) {
        eprintln!("pv-example-wayland-client: stop-signal handlers: {e}");
        std::process::exit(1);
    }
    let timeout = Duration::from_secs(args.timeout);
    loop {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(one_frame());
        });
        let result = rx
            .recv_timeout(timeout)
            .unwrap_or_else(|_| Err(anyhow::anyhow!("timed out after {timeout:?}")));
        match &result {
            Ok(sum) => println!("wayland OK frame={sum}"),
            Err(e) => println!("wayland FAIL: {e:#}"),
        }
        if args.once {
            std::process::exit(if result.is_ok() { 0 } else { 1 });
        }
        std::thread::sleep(Duration::from_secs(5));
    }
}

fn one_frame() -> anyhow::Result<String> {
    let conn = if std::env::var_os("WAYLAND_DISPLAY").is_some()
        || std::env::var_os("WAYLAND_SOCKET").is_some()
    {
        // WAYLAND_DISPLAY may be absolute (the link's target) or a name
        // under XDG_RUNTIME_DIR.
        Connection::connect_to_env().context("connect to compositor")?
    } else {
        let stream = std::os::unix::net::UnixStream::connect(DEFAULT_DISPLAY)
            .with_context(|| format!("connect to {DEFAULT_DISPLAY}"))?;
        Connection::from_socket(stream).context("wayland handshake")?
    };
    let (globals, mut queue) = registry_queue_init::<State>(&conn).context("read the registry")?;
    let qh = queue.handle();
    let compositor: wl_compositor::WlCompositor =
        globals.bind(&qh, 1..=4, ()).context("wl_compositor")?;
    let shm: wl_shm::WlShm = globals.bind(&qh, 1..=1, ()).context("wl_shm")?;
    let wm: xdg_wm_base::XdgWmBase = globals.bind(&qh, 1..=1, ()).context("xdg_wm_base")?;

    let pixels = wayland_frame::draw();
    let expected = wayland_frame::checksum(pixels.chunks((WIDTH * 4) as usize));
    let memfd = memfd::MemfdOptions::default()
        .close_on_exec(true)
        .create("pv-wayland-frame")
        .context("memfd")?;
    let mut file = memfd.into_file();
    file.write_all(&pixels).context("fill pool")?;
    let pool = shm.create_pool(file.as_fd(), pixels.len() as i32, &qh, ());
    let buffer = pool.create_buffer(
        0,
        WIDTH as i32,
        HEIGHT as i32,
        (WIDTH * 4) as i32,
        wl_shm::Format::Argb8888,
        &qh,
        (),
    );

    let surface = compositor.create_surface(&qh, ());
    let xdg = wm.get_xdg_surface(&surface, &qh, ());
    let top = xdg.get_toplevel(&qh, ());
    top.set_title("pv-example-wayland-client".into());
    surface.commit();
    let mut state = State::default();
    while state.configured.is_none() {
        queue
            .blocking_dispatch(&mut state)
            .context("wait for configure")?;
    }
    if let Some(serial) = state.configured {
        xdg.ack_configure(serial);
    }
    surface.attach(Some(&buffer), 0, 0);
    surface.damage(0, 0, WIDTH as i32, HEIGHT as i32);
    surface.frame(&qh, ());
    surface.commit();
    while !state.frame_done {
        queue
            .blocking_dispatch(&mut state)
            .context("wait for frame")?;
    }
    buffer.destroy();
    pool.destroy();
    Ok(expected)
}

impl Dispatch<wl_registry::WlRegistry, GlobalListContents> for State {
    fn event(
        _: &mut Self,
        _: &wl_registry::WlRegistry,
        _: wl_registry::Event,
        _: &GlobalListContents,
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
    }
}

impl Dispatch<xdg_wm_base::XdgWmBase, ()> for State {
    fn event(
        _: &mut Self,
        wm: &xdg_wm_base::XdgWmBase,
        event: xdg_wm_base::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let xdg_wm_base::Event::Ping { serial } = event {
            wm.pong(serial);
        }
    }
}

impl Dispatch<xdg_surface::XdgSurface, ()> for State {
    fn event(
        state: &mut Self,
        _: &xdg_surface::XdgSurface,
        event: xdg_surface::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let xdg_surface::Event::Configure { serial } = event {
            state.configured = Some(serial);
        }
    }
}

impl Dispatch<wl_callback::WlCallback, ()> for State {
    fn event(
        state: &mut Self,
        _: &wl_callback::WlCallback,
        event: wl_callback::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let wl_callback::Event::Done { .. } = event {
            state.frame_done = true;
        }
    }
}

/// Objects whose events this client ignores.
macro_rules! ignore_events {
    ($($t:ty),*) => {$(
        impl Dispatch<$t, ()> for State {
            fn event(_: &mut Self, _: &$t, _: <$t as wayland_client::Proxy>::Event, _: &(),
                     _: &Connection, _: &QueueHandle<Self>) {}
        }
    )*};
}
ignore_events!(
    wl_compositor::WlCompositor,
    wl_shm::WlShm,
    wl_shm_pool::WlShmPool,
    wl_buffer::WlBuffer,
    wl_surface::WlSurface,
    xdg_toplevel::XdgToplevel
);
