//! `pv-example-wayland-server`: a tiny Wayland compositor (pure-Rust
//! wayland-server, no libwayland) exporting `wayland-0` at `/run/wayland-0`.
//!
//! Offers wl_compositor, wl_shm and a minimal xdg_wm_base. Client shm pools
//! are mmapped; on every `wl_surface.commit` with a buffer attached it logs
//! `commit buffer <w>x<h> checksum=<fnv>` (the checksum of
//! [`crate::wayland_frame`]), releases the buffer and fires the frame
//! callbacks. Nothing is displayed.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::wayland_frame;
use anyhow::Context;
use clap::Parser;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use wayland_protocols::xdg::shell::server::{xdg_surface, xdg_toplevel, xdg_wm_base};
use wayland_server::backend::{ClientData, ClientId, DisconnectReason};
use wayland_server::protocol::{
    wl_buffer, wl_callback, wl_compositor, wl_region, wl_shm, wl_shm_pool, wl_surface,
};
use wayland_server::{
    Client, DataInit, Dispatch, Display, DisplayHandle, GlobalDispatch, ListeningSocket, New,
    Resource,
};

#[derive(Parser)]
#[command(about = "Minimal Wayland compositor that checksums committed frames")]
struct Args {
    /// Absolute socket path to listen on.
    #[arg(long, default_value = "/run/wayland-0")]
    socket: PathBuf,
}

/// A client's shm pool, mapped read-only into our address space.
struct Pool {
    _fd: OwnedFd,
    ptr: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping is only read, under the Mutex that owns it.
unsafe impl Send for Pool {}

impl Pool {
    fn map(fd: OwnedFd, len: usize) -> anyhow::Result<Self> {
        anyhow::ensure!(len > 0, "empty pool");
        // SAFETY: fresh shared read-only mapping of a client-supplied fd; we
        // only read it and unmap it in Drop.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        anyhow::ensure!(
            ptr != libc::MAP_FAILED,
            "mmap: {}",
            std::io::Error::last_os_error()
        );
        Ok(Self { _fd: fd, ptr, len })
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: ptr/len describe a live mapping owned by self. A client
        // truncating the file would SIGBUS us; acceptable for an example.
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what map() created.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

type SharedPool = Arc<Mutex<Option<Pool>>>;

struct BufferData {
    pool: SharedPool,
    offset: usize,
    width: usize,
    height: usize,
    stride: usize,
}

#[derive(Default)]
struct SurfaceData {
    pending: Mutex<SurfaceState>,
}

#[derive(Default)]
struct SurfaceState {
    buffer: Option<wl_buffer::WlBuffer>,
    callbacks: Vec<wl_callback::WlCallback>,
}

struct State {
    start: Instant,
    commits: u64,
}

struct Cd;
impl ClientData for Cd {
    fn initialized(&self, _: ClientId) {}
    fn disconnected(&self, _: ClientId, _: DisconnectReason) {}
}

/// The program `pv-example-wayland-server` runs (arguments from the command line).
pub fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // ListeningSocket removes both on drop, which process::exit skips.
    let (socket, lock) = (args.socket.clone(), args.socket.with_extension("lock"));
    crate::pid1::exit_on_stop("pv-example-wayland-server", move || {
        crate::pid1::remove_paths(&[socket, lock])
    })?;
    let mut display: Display<State> = Display::new().context("create display")?;
    let dh = display.handle();
    dh.create_global::<State, wl_compositor::WlCompositor, ()>(4, ());
    dh.create_global::<State, wl_shm::WlShm, ()>(1, ());
    dh.create_global::<State, xdg_wm_base::XdgWmBase, ()>(1, ());
    if let Some(dir) = args.socket.parent() {
        std::fs::create_dir_all(dir).ok();
    }
    let _ = std::fs::remove_file(&args.socket);
    let listener = ListeningSocket::bind_absolute(args.socket.clone())
        .with_context(|| format!("bind {}", args.socket.display()))?;
    println!("wayland-server listening on {}", args.socket.display());
    let mut state = State {
        start: Instant::now(),
        commits: 0,
    };
    loop {
        let (accept_ready, clients_ready) = {
            let mut fds = [
                PollFd::new(listener.as_fd(), PollFlags::POLLIN),
                PollFd::new(display.backend().poll_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e).context("poll"),
            }
            let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
            (ready(&fds[0]), ready(&fds[1]))
        };
        if accept_ready {
            while let Some(stream) = listener.accept().context("accept")? {
                if let Err(e) = display.handle().insert_client(stream, Arc::new(Cd)) {
                    eprintln!("insert client: {e}");
                }
            }
        }
        if clients_ready {
            display.dispatch_clients(&mut state).context("dispatch")?;
        }
        display.flush_clients().ok();
    }
}

impl GlobalDispatch<wl_compositor::WlCompositor, ()> for State {
    fn bind(
        _: &mut Self,
        _: &DisplayHandle,
        _: &Client,
        resource: New<wl_compositor::WlCompositor>,
        _: &(),
        init: &mut DataInit<'_, Self>,
    ) {
        init.init(resource, ());
    }
}

impl Dispatch<wl_compositor::WlCompositor, ()> for State {
    fn request(
        _: &mut Self,
        _: &Client,
        _: &wl_compositor::WlCompositor,
        request: wl_compositor::Request,
        _: &(),
        _: &DisplayHandle,
        init: &mut DataInit<'_, Self>,
    ) {
        match request {
            wl_compositor::Request::CreateSurface { id } => {
                init.init(id, SurfaceData::default());
            }
            wl_compositor::Request::CreateRegion { id } => {
                init.init(id, ());
            }
            _ => {}
        }
    }
}

impl Dispatch<wl_region::WlRegion, ()> for State {
    fn request(
        _: &mut Self,
        _: &Client,
        _: &wl_region::WlRegion,
        _: wl_region::Request,
        _: &(),
        _: &DisplayHandle,
        _: &mut DataInit<'_, Self>,
    ) {
    }
}

impl Dispatch<wl_surface::WlSurface, SurfaceData> for State {
    fn request(
        state: &mut Self,
        _: &Client,
        surface: &wl_surface::WlSurface,
        request: wl_surface::Request,
        data: &SurfaceData,
        _: &DisplayHandle,
        init: &mut DataInit<'_, Self>,
    ) {
        let Ok(mut pending) = data.pending.lock() else {
            return;
        };
        match request {
            wl_surface::Request::Attach { buffer, .. } => pending.buffer = buffer,
            wl_surface::Request::Frame { callback } => {
                pending.callbacks.push(init.init(callback, ()));
            }
            wl_surface::Request::Commit => {
                if let Some(buffer) = pending.buffer.take() {
                    match buffer.data::<BufferData>().map(frame_checksum) {
                        Some(Ok(line)) => {
                            state.commits += 1;
                            println!("surface {} {line}", surface.id().protocol_id());
                        }
                        Some(Err(e)) => eprintln!("commit: unreadable buffer: {e}"),
                        None => eprintln!("commit: foreign buffer"),
                    }
                    buffer.release();
                }
                let now = state.start.elapsed().as_millis() as u32;
                for cb in pending.callbacks.drain(..) {
                    cb.done(now);
                }
            }
            _ => {}
        }
    }
}

fn frame_checksum(b: &BufferData) -> anyhow::Result<String> {
    let guard = b.pool.lock().map_err(|_| anyhow::anyhow!("pool lock"))?;
    let pool = guard.as_ref().context("pool gone")?;
    let bytes = pool.bytes();
    let row = b.width * 4;
    let need = b.offset + b.stride * b.height.saturating_sub(1) + row;
    anyhow::ensure!(
        b.stride >= row && need <= bytes.len(),
        "buffer outside pool"
    );
    let rows = (0..b.height).map(|y| &bytes[b.offset + y * b.stride..][..row]);
    Ok(format!(
        "commit buffer {}x{} checksum={}",
        b.width,
        b.height,
        wayland_frame::checksum(rows)
    ))
}

impl Dispatch<wl_callback::WlCallback, ()> for State {
    fn request(
        _: &mut Self,
        _: &Client,
        _: &wl_callback::WlCallback,
        _: wl_callback::Request,
        _: &(),
        _: &DisplayHandle,
        _: &mut DataInit<'_, Self>,
    ) {
    }
}

impl GlobalDispatch<wl_shm::WlShm, ()> for State {
    fn bind(
        _: &mut Self,
        _: &DisplayHandle,
        _: &Client,
        resource: New<wl_shm::WlShm>,
        _: &(),
        init: &mut DataInit<'_, Self>,
    ) {
        let shm = init.init(resource, ());
        shm.format(wl_shm::Format::Argb8888);
        shm.format(wl_shm::Format::Xrgb8888);
    }
}

impl Dispatch<wl_shm::WlShm, ()> for State {
    fn request(
        _: &mut Self,
        _: &Client,
        shm: &wl_shm::WlShm,
        request: wl_shm::Request,
        _: &(),
        _: &DisplayHandle,
        init: &mut DataInit<'_, Self>,
    ) {
        if let wl_shm::Request::CreatePool { id, fd, size } = request {
            match Pool::map(fd, size.max(0) as usize) {
                Ok(pool) => {
                    init.init(id, Arc::new(Mutex::new(Some(pool))));
                }
                Err(e) => {
                    shm.post_error(wl_shm::Error::InvalidFd, format!("{e}"));
                }
            }
        }
    }
}

impl Dispatch<wl_shm_pool::WlShmPool, SharedPool> for State {
    fn request(
        _: &mut Self,
        _: &Client,
        _: &wl_shm_pool::WlShmPool,
        request: wl_shm_pool::Request,
        pool: &SharedPool,
        _: &DisplayHandle,
        init: &mut DataInit<'_, Self>,
    ) {
        match request {
            wl_shm_pool::Request::CreateBuffer {
                id,
                offset,
                width,
                height,
                stride,
                ..
            } => {
                init.init(
                    id,
                    BufferData {
                        pool: pool.clone(),
                        offset: offset.max(0) as usize,
                        width: width.max(0) as usize,
                        height: height.max(0) as usize,
                        stride: stride.max(0) as usize,
                    },
                );
            }
            wl_shm_pool::Request::Resize { size } => {
                if let Ok(mut guard) = pool.lock() {
                    if let Some(old) = guard.take() {
                        let fd = old._fd.try_clone();
                        drop(old);
                        *guard = fd
                            .ok()
                            .and_then(|fd| Pool::map(fd, size.max(0) as usize).ok());
                    }
                }
            }
            _ => {}
        }
    }
}

impl Dispatch<wl_buffer::WlBuffer, BufferData> for State {
    fn request(
        _: &mut Self,
        _: &Client,
        _: &wl_buffer::WlBuffer,
        _: wl_buffer::Request,
        _: &BufferData,
        _: &DisplayHandle,
        _: &mut DataInit<'_, Self>,
    ) {
    }
}

impl GlobalDispatch<xdg_wm_base::XdgWmBase, ()> for State {
    fn bind(
        _: &mut Self,
        _: &DisplayHandle,
        _: &Client,
        resource: New<xdg_wm_base::XdgWmBase>,
        _: &(),
        init: &mut DataInit<'_, Self>,
    ) {
        init.init(resource, ());
    }
}

impl Dispatch<xdg_wm_base::XdgWmBase, ()> for State {
    fn request(
        _: &mut Self,
        _: &Client,
        _: &xdg_wm_base::XdgWmBase,
        request: xdg_wm_base::Request,
        _: &(),
        _: &DisplayHandle,
        init: &mut DataInit<'_, Self>,
    ) {
        if let xdg_wm_base::Request::GetXdgSurface { id, .. } = request {
            init.init(id, ());
        }
    }
}

impl Dispatch<xdg_surface::XdgSurface, ()> for State {
    fn request(
        state: &mut Self,
        _: &Client,
        xdg: &xdg_surface::XdgSurface,
        request: xdg_surface::Request,
        _: &(),
        _: &DisplayHandle,
        init: &mut DataInit<'_, Self>,
    ) {
        if let xdg_surface::Request::GetToplevel { id } = request {
            let top = init.init(id, ());
            top.configure(0, 0, Vec::new());
            xdg.configure(state.commits as u32 + 1);
        }
    }
}

impl Dispatch<xdg_toplevel::XdgToplevel, ()> for State {
    fn request(
        _: &mut Self,
        _: &Client,
        _: &xdg_toplevel::XdgToplevel,
        _: xdg_toplevel::Request,
        _: &(),
        _: &DisplayHandle,
        _: &mut DataInit<'_, Self>,
    ) {
    }
}
