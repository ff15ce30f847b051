//! Real LXC on this host: a busybox squashfs container installed from a
//! pvrexport, started by `pv-appengine --runtime lxc` under a temporary
//! root. Needs root, LXC, mksquashfs and a static busybox, and fails saying
//! which is missing otherwise.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use appengine_lite::pvrexport;
use common::*;
use pv_testkit::{require_root, require_tool};
use serde_json::json;

fn lxc_pid(root: &Path, name: &str) -> i64 {
    Command::new("lxc-info")
        .arg("-P")
        .arg(root.join("run/pantavisor/lxc"))
        .args(["-n", name, "-p", "-H"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(-1)
}

#[test]
fn lxc_busybox_container_boots_restarts_and_stops() {
    let busybox = "/bin/busybox";
    require_root();
    for tool in ["lxc-start", "lxc-info", "mksquashfs"] {
        require_tool(tool);
    }
    assert!(
        Path::new(busybox).exists(),
        "this test needs a static {busybox} (package busybox-static): ci/install-deps.sh installs it"
    );
    let work = tempfile::tempdir().expect("tempdir");
    let rootfs = work.path().join("rootfs");
    for d in ["bin", "proc", "sys", "dev", "run", "tmp", "etc", "app"] {
        std::fs::create_dir_all(rootfs.join(d)).expect("mkdir");
    }
    std::fs::copy(busybox, rootfs.join("bin/busybox")).expect("copy busybox");
    for a in ["sh", "sleep", "echo"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a)).expect("symlink");
    }
    std::fs::write(rootfs.join("etc/resolv.conf"), b"").expect("resolv");
    let sq = work.path().join("root.squashfs");
    let st = Command::new("mksquashfs")
        .arg(&rootfs)
        .arg(&sq)
        .args(["-noappend", "-quiet", "-comp", "gzip"])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("mksquashfs");
    assert!(st.success());
    let sq = std::fs::read(&sq).expect("read squashfs");
    // pvr's rendering of `Cmd: ["/bin/sh", "-c", "echo ...; exec sleep
    // 1000"]`: every word but the first quoted. On a real Pantavisor the
    // Pantacor LXC fork takes the quotes off; stock LXC 5 would not.
    let conf = "lxc.tty.max = 8\nlxc.pty.max = 1024\nlxc.cgroup.devices.allow = a\n\
lxc.rootfs.path = overlayfs:/volumes/bb/root.squashfs:/volumes/bb/lxc-overlay/upper\n\
lxc.init.cmd = /bin/sh \"-c\" \"echo 'unix-echo OK'; exec sleep 1000\"\nlxc.init.cwd = /\n\
lxc.environment = PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n\
lxc.namespace.keep = user  net  ipc\nlxc.mount.auto = proc  sys:rw  cgroup\n\
lxc.mount.entry = tmpfs run tmpfs rw,nodev,relatime,create=dir,mode=755 0 0\n\
lxc.mount.entry = /volumes/bb/docker--tmp tmp none bind,rw,create=dir 0 0\n";
    let (csha, ssha) = (
        pvrexport::sha256_hex(conf.as_bytes()),
        pvrexport::sha256_hex(&sq),
    );
    let root = tempfile::tempdir().expect("tempdir");
    let pvtx = root.path().join("usr/lib/pantavisor/pvtx.d");
    std::fs::create_dir_all(&pvtx).expect("mkdir");
    pvrexport::write(
        &pvtx.join("bb.tgz"),
        &json!({
            "#spec": "pantavisor-service-system@1",
            "bb/run.json": {"#spec":"service-manifest-run@1","name":"bb","type":"lxc",
                "config":"lxc.container.conf","root-volume":"root.squashfs","group":"app",
                "restart_policy":"container",
                "storage":{"docker--tmp":{"persistence":"permanent"},"lxc-overlay":{"persistence":"boot"}},
                "volumes":[],"drivers":{"manual":[],"optional":[],"required":[]}},
            "bb/services.json": {"services":[{"name":"raw-unix","type":"unix","socket":"/run/example/raw.sock"}]},
            "bb/lxc.container.conf": csha,
            "bb/root.squashfs": ssha,
        }),
        &[(csha.clone(), conf.as_bytes().to_vec()), (ssha.clone(), sq)],
    )
    .expect("export");
    let rootpath = root.path().to_owned();
    let xc = script(work.path(), "xc", "echo xc up\nexec sleep 1000");
    let child = Command::new(env!("CARGO_BIN_EXE_pv-appengine"))
        .arg("--root")
        .arg(&rootpath)
        .args([
            "--runtime",
            "lxc",
            "--recovery-unit-ms",
            "40",
            "--logger-stop-ms",
            "200",
        ])
        .args(["--stop-timeout-ms", "1000", "--xconnect"])
        .arg(&xc)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let ae = Appengine { root, child };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for(Duration::from_secs(10), || ae.socket().exists()).expect("socket");
        ae.wait_log(
            "state revision '0' status is now READY",
            Duration::from_secs(30),
        );
        let pid = lxc_pid(&rootpath, "bb");
        assert!(pid > 0 && pid_alive(pid), "lxc-info pid {pid}");
        let console = rootpath.join("run/pantavisor/pv/logs/0/bb/lxc/console.log");
        wait_for(Duration::from_secs(5), || {
            std::fs::read_to_string(&console)
                .unwrap_or_default()
                .contains("unix-echo OK")
        })
        .expect("console.log has the container's output");
        assert!(
            Path::new(&format!("/proc/{pid}/root/pantavisor/pv-ctrl")).exists(),
            "pv-ctrl visible in the container at /pantavisor/pv-ctrl"
        );
        let cmd = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        assert!(
            cmd.starts_with("sleep"),
            "init is the container's entrypoint: {cmd:?}"
        );

        // `sleep` as PID 1 ignores the halt signal (SIGPWR): the lenient
        // stop ends in the forced one after the grace.
        let (code, _, _) = ae.put("/containers/bb", r#"{"action":"stop"}"#);
        assert_eq!(code, 200);
        ae.wait_status("bb", "STOPPED", Duration::from_secs(5));
        assert!(!pid_alive(pid));
        assert!(ae
            .log()
            .contains("platform 'bb' did not exit after lenient stop"));
        let (code, _, _) = ae.put("/containers/bb", r#"{"action":"start"}"#);
        assert_eq!(code, 200);
        ae.wait_status("bb", "STARTED", Duration::from_secs(10));
        let pid2 = lxc_pid(&rootpath, "bb");
        assert!(pid2 > 0 && pid2 != pid);
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid2 as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .expect("kill");
        wait_for(Duration::from_secs(10), || {
            let p = lxc_pid(&rootpath, "bb");
            p > 0 && p != pid2
        })
        .expect("the app group's auto-recovery restarts the LXC container");
    }));
    // Drop stops the appengine and unmounts its volumes before the temp
    // root is removed.
    drop(ae);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}
