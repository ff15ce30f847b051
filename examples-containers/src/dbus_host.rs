//! The hosted-bus D-Bus example: upstream's `pv-example-dbus-host-server`
//! and `pv-example-dbus-host-client` (meta-pantavisor branch
//! `feature/xconnect-hosted-systembus`).
//!
//! Both containers only *consume* `system-bus`, the builtin export of the
//! bus Pantavisor hosts (graph provider `_pv_`, `provider_pid` 0); neither
//! ships a dbus-daemon, a policy or a passwd. pv-xconnect masquerades each
//! link as the numeric uid of its role (the graph's `uid`), and the bus's
//! generated default-deny policy grants by that uid: the server (role
//! `example-service`, declared owner of `org.pantavisor.Example` in its
//! `services.json`) may own the name, the client (role `operator`, in the
//! declaration's `allow`) may call it, and nobody may own anything else.
//!
//! The server publishes the same [`crate::dbus::Example`] object as
//! `pv-example-dbus-server` and reconnects when the bus goes away. The
//! client prints, per round, what upstream's pvtest checks and what the
//! harness asserts: the `GetInfo` reply, `dbus OK uid=<n>` (the uid the bus
//! reports for it), whether it may own [`ROGUE`], and the uid the bus
//! reports after it claimed uid 0 during authentication.

use std::time::Duration;

use crate::dbus::{self, ExampleProxy};

/// A name no role is granted: owning it must be refused.
pub const ROGUE: &str = "org.pantavisor.Rogue";

/// The uid the bus reports for `conn`'s own connection.
async fn own_uid(conn: &zbus::Connection) -> zbus::Result<u32> {
    let bus = zbus::fdo::DBusProxy::new(conn).await?;
    let me = conn
        .unique_name()
        .ok_or_else(|| zbus::Error::Failure("connection has no unique name".into()))?;
    Ok(bus.get_connection_unix_user(me.clone().into()).await?)
}

/// `pv-example-dbus-host-server`: owns `org.pantavisor.Example` on the
/// hosted bus at `socket` and serves it, forever. The link is injected
/// after the container starts and the bus may restart, so every failure
/// (socket absent, name refused, bus gone) is printed and retried.
pub async fn serve_forever(socket: &str) -> anyhow::Result<()> {
    let address = format!("unix:path={socket}");
    let mut last_error = String::new();
    loop {
        match dbus::serve(&address).await {
            Ok(conn) => {
                last_error.clear();
                let uid = match own_uid(&conn).await {
                    Ok(uid) => uid.to_string(),
                    Err(e) => format!("unknown ({e})"),
                };
                println!(
                    "dbus-host-example: serving {} at {} on the hosted bus as uid={uid}",
                    dbus::NAME,
                    dbus::PATH
                );
                watch(&conn).await;
                println!("dbus-host-example: hosted bus connection lost, reconnecting");
            }
            Err(e) => {
                let msg = e.to_string();
                if msg != last_error {
                    println!("dbus-host-example: waiting for the hosted system bus: {msg}");
                    last_error = msg;
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Returns when the bus stops answering (a cheap call every 5 s).
async fn watch(conn: &zbus::Connection) {
    let Ok(bus) = zbus::fdo::DBusProxy::new(conn).await else {
        return;
    };
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        if bus.get_id().await.is_err() {
            return;
        }
    }
}

/// One round of `pv-example-dbus-host-client`. Only the call to the
/// service can fail the round; the refusals it provokes are printed.
pub async fn client_round(socket: &str) -> anyhow::Result<()> {
    let conn = dbus::connect(socket, Duration::from_secs(60)).await?;
    let p = ExampleProxy::new(&conn).await?;
    let info = p.get_info().await?;
    println!("{info}");
    let uid = p.who_am_i().await?;
    println!("dbus OK uid={uid}");
    match conn.request_name(ROGUE).await {
        Ok(()) => println!("dbus-host RequestName {ROGUE}: ALLOWED"),
        Err(e) if dbus::is_refused(&e) => println!("dbus-host RequestName {ROGUE}: DENIED ({e})"),
        Err(e) => println!("dbus-host RequestName {ROGUE}: ERROR ({e})"),
    }
    match dbus::claim_uid_0(socket).await {
        Err(e) => println!("dbus-host claim uid 0: authentication refused ({e})"),
        Ok(c) => match ExampleProxy::new(&c).await?.who_am_i().await {
            Ok(seen) => println!("dbus-host claim uid 0: bus sees uid={seen}"),
            Err(e) => println!("dbus-host claim uid 0: call failed ({e})"),
        },
    }
    Ok(())
}

/// `pv-example-dbus-host-client`: a round every 30 s (every 2 s until
/// the first succeeds: the server may not own its name yet), each ending
/// with `dbus-host ROUND ok` or `dbus ERROR <why>`.
pub async fn client_main(socket: &str, once: bool) -> anyhow::Result<()> {
    loop {
        let r = client_round(socket).await;
        match &r {
            Ok(()) => println!("dbus-host ROUND ok"),
            Err(e) => println!("dbus ERROR {e:#}"),
        }
        if once {
            return r;
        }
        let pause = if r.is_ok() { 30 } else { 2 };
        tokio::time::sleep(Duration::from_secs(pause)).await;
    }
}
