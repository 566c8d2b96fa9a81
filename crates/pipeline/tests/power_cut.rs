//! A simulated power cut: SIGKILL keeps the kernel's page cache, so a kill
//! test alone passes even without fsync. Here blob files go through
//! `SimulatedFs`, which forgets every write not made durable; the metadata is
//! SQLite with synchronous=FULL, or PostgreSQL (synchronous_commit = on) when
//! `POSTROOM_TEST_POSTGRES` names a test cluster (scripts/pg-test-cluster).
//! Every delivery acknowledged before the cut must be readable afterwards,
//! byte for byte.

mod common;

use std::io;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use postroom_core::Address;
use postroom_directory::Route;
use postroom_pipeline::policy::AcceptedRcpt;
use postroom_pipeline::{MxPipeline, NoFilter};
use postroom_smtp::service::{BodySpool, PeerContext, SmtpHandler};
use postroom_smtp::{BodyType, DeliveryOutcome, Envelope, RcptTarget};
use postroom_store::{BlobStore, DurableFs, FsBlobStore, SimulatedFs, Store};

struct Setup {
    _dir: tempfile::TempDir,
    data: PathBuf,
    fs: Arc<SimulatedFs>,
    pipeline: Arc<MxPipeline>,
    account_id: postroom_store::AccountId,
}

/// The store on the simulated file system: the embedded database, or
/// PostgreSQL at `pg` (its bodies on the simulated file system all the
/// same); `careless`, a blob store that skips an fsync.
async fn open(
    data: &std::path::Path,
    fs: &Arc<SimulatedFs>,
    careless: Option<bool>,
    pg: Option<&str>,
) -> Store {
    let blobs: Arc<dyn BlobStore> = match careless {
        Some(fsync_content) => Arc::new(CarelessBlobs {
            root: data.join("blobs"),
            fs: fs.clone(),
            fsync_content,
        }),
        None => Arc::new(FsBlobStore::new(data.join("blobs"), fs.clone()).unwrap()),
    };
    match pg {
        None => Store::open_with_blobs(data, blobs).unwrap(),
        Some(url) => Store::open_postgres_with_blobs(url, None, data, blobs)
            .await
            .unwrap(),
    }
}

async fn setup(careless: Option<bool>, pg: Option<&str>) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_path_buf();
    let fs = Arc::new(SimulatedFs::new_at(&data));
    let store = open(&data, &fs, careless, pg).await;
    let d = store
        .meta()
        .add_domain("example.com", "example.com", None)
        .await
        .unwrap();
    let acct = store
        .meta()
        .add_account(d.id, "user", "user", None, None)
        .await
        .unwrap();
    let pipeline = Arc::new(common::test_pipeline(store, "mx.example.com", Arc::new(NoFilter)));
    Setup {
        _dir: dir,
        data,
        fs,
        pipeline,
        account_id: acct.id,
    }
}

/// A blob store with the bugs the test must catch: no fsync at all, or
/// the file fsynced but never its directory entry.
struct CarelessBlobs {
    root: PathBuf,
    fs: Arc<SimulatedFs>,
    fsync_content: bool,
}

impl BlobStore for CarelessBlobs {
    fn put(&self, id: &str, data: &[u8]) -> io::Result<()> {
        let shard = self.root.join(&id[..6]);
        self.fs.create_dir_all(&shard)?;
        self.fs.write_new(&shard.join(id), data, self.fsync_content)
    }
    fn sync(&self) -> io::Result<()> {
        Ok(())
    }
    fn get(&self, id: &str) -> io::Result<Vec<u8>> {
        self.fs.read(&self.root.join(&id[..6]).join(id))
    }
    fn delete(&self, _: &str) -> io::Result<()> {
        Ok(())
    }
    fn ids_before(&self, _: &str) -> io::Result<Vec<String>> {
        Ok(Vec::new())
    }
}

fn envelope(n: usize) -> (Envelope<AcceptedRcpt>, Vec<u8>) {
    let body = format!(
        "Subject: message {n}\r\nMessage-ID: <{n}@test>\r\n\r\n{}\r\n",
        "x".repeat(n % 3000)
    )
    .into_bytes();
    let rcpt = AcceptedRcpt {
        forwarded: false,
        rcpt: "user@example.com".into(),
        routes: vec![Route::Local {
            account_id: postroom_store::AccountId(0),
            address: "user@example.com".into(),
            enabled: true,
        }],
    };
    let env = Envelope {
        helo: "client.example".into(),
        esmtp: true,
        tls: false,
        peer: "192.0.2.1".parse::<IpAddr>().unwrap(),
        mail_from: Some(Address::parse("a@remote.example", false).unwrap()),
        recipients: vec![(
            RcptTarget::Mailbox(Address::parse("user@example.com", false).unwrap()),
            rcpt,
        )],
        body_type: BodyType::SevenBit,
        smtputf8: false,
        chunking: false,
        size: body.len() as u64,
        has_8bit: false,
        bare_line_ends: 0,
        auth: None,
    };
    (env, body)
}

/// Whether the power is already off, and the deliveries acknowledged before.
#[derive(Default)]
struct Acks {
    cut: bool,
    acked: Vec<(usize, Vec<u8>)>,
}

struct Outcome {
    acked: usize,
    lost: usize,
}

/// Runs concurrent deliveries, cuts the power after `cut_after` acks, and
/// counts acknowledged messages that did not survive.
async fn run(careless: Option<bool>, cut_after: usize, pg: Option<&str>) -> Outcome {
    let s = setup(careless, pg).await;
    let account_id = s.account_id;
    let acked = Arc::new(Mutex::new(Acks::default()));
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let pipeline = s.pipeline.clone();
        let acked = acked.clone();
        let fs = s.fs.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..40 {
                let n = worker * 1000 + i;
                let (mut env, body) = envelope(n);
                if let Route::Local { account_id: id, .. } = &mut env.recipients[0].1.routes[0] {
                    *id = account_id;
                }
                let peer = PeerContext {
                    ip: env.peer,
                    helo: None,
                    tls: false,
                    declared_size: None,
                    auth: None,
                };
                // The body arrives in pieces, as the SMTP glue writes it.
                let outcome = match pipeline.open_spool() {
                    Ok(mut spool) => {
                        let written = body.chunks(1000).try_for_each(|c| spool.write(c));
                        match written {
                            Ok(()) => pipeline.deliver(&peer, env, spool).await,
                            Err(_) => continue,
                        }
                    }
                    Err(_) => continue,
                };
                let mut a = acked.lock().unwrap();
                if a.cut {
                    return;
                }
                if let DeliveryOutcome::Accepted { .. } = outcome {
                    a.acked.push((n, body));
                    if a.acked.len() == cut_after {
                        fs.power_cut();
                        fs.fail_writes();
                        a.cut = true;
                        return;
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let acked = std::mem::take(&mut acked.lock().unwrap().acked);
    // "Reboot": reopen the metadata; blobs come from what survived.
    s.fs.restore();
    let store = open(&s.data, &s.fs, careless, pg).await;
    let inbox = store
        .meta()
        .find_folder(account_id, "INBOX")
        .await
        .unwrap()
        .unwrap();
    let rows = store.meta().messages(inbox.id).await.unwrap();
    let mut lost = 0;
    for (n, body) in &acked {
        let needle = format!("Message-ID: <{n}@test>");
        let found = rows.iter().filter(|m| {
            store
                .message_bytes(m)
                .map(|b| b.ends_with(body) && String::from_utf8_lossy(&b).contains(&needle))
                .unwrap_or(false)
        });
        if found.count() != 1 {
            lost += 1;
        }
    }
    Outcome {
        acked: acked.len(),
        lost,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_messages_survive_a_power_cut() {
    for cut_after in [1, 17, 60, 150] {
        let o = run(None, cut_after, None).await;
        assert_eq!(o.acked, cut_after);
        assert_eq!(o.lost, 0, "lost {} of {} acknowledged messages", o.lost, o.acked);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_test_catches_a_store_that_skips_fsync() {
    // No fsync at all, and the file fsynced without its directory entry.
    for fsync_content in [false, true] {
        let o = run(Some(fsync_content), 30, None).await;
        assert_eq!(o.acked, 30);
        assert!(
            o.lost > 0,
            "a store that skips an fsync lost nothing: the simulation has no teeth"
        );
    }
}

/// A fresh database on the test cluster, by `psql` (the pipeline does not
/// depend on a driver); `None` without a cluster.
fn pg_database(tag: &str) -> Option<String> {
    let url = std::env::var("POSTROOM_TEST_POSTGRES")
        .ok()
        .filter(|u| !u.is_empty())?;
    let name = format!("power_cut_{tag}_{}", std::process::id());
    for sql in [
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        format!("CREATE DATABASE {name}"),
    ] {
        let ok = std::process::Command::new("psql")
            .args([url.as_str(), "-qc", sql.as_str()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "psql: {sql}");
    }
    let base = url.split('?').next().unwrap_or(&url);
    Some(format!("{}/{name}", &base[..base.rfind('/').unwrap()]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_messages_survive_a_power_cut_on_postgresql() {
    for cut_after in [17, 150] {
        let Some(url) = pg_database(&cut_after.to_string()) else {
            eprintln!("POSTROOM_TEST_POSTGRES is not set: PostgreSQL not tested");
            return;
        };
        let o = run(None, cut_after, Some(&url)).await;
        assert_eq!(o.acked, cut_after);
        assert_eq!(o.lost, 0, "lost {} of {} acknowledged messages", o.lost, o.acked);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_test_catches_a_store_that_skips_fsync_on_postgresql() {
    let Some(url) = pg_database("careless") else {
        eprintln!("POSTROOM_TEST_POSTGRES is not set: PostgreSQL not tested");
        return;
    };
    let o = run(Some(false), 30, Some(&url)).await;
    assert_eq!(o.acked, 30);
    assert!(
        o.lost > 0,
        "a store that skips an fsync lost nothing on PostgreSQL"
    );
}
