//! Several processes on one SQLite file, each delivering the same commands (same command
//! ids), as redelivered messages would: every command applies once, and no process's cache
//! nor the stored snapshot counts an event twice. (Before the append said whether it wrote or
//! found a batch, 4 processes running the same 300 commands left 3 of 4 caches, and the
//! snapshot, at 301 for 300 events.)
//!
//! The test binary runs itself as the children: `same_commands_child` does nothing unless
//! the parent sets `ES_PROCESSES_CHILD_DB`.

use std::process::{Command, Stdio};

use es::prelude::*;
use es::{EventStore, SqliteStore, StreamId};

/// One delivery was counted.
#[event(version = 1)]
pub struct Counted {
    /// Which command it was.
    pub command: u32,
}

/// Counts what was delivered; snapshotted often, so that races meet snapshot boundaries.
#[derive(Aggregate, Default, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(crate = "es::serde")]
#[aggregate(id = String, events(Counted), snapshot(every = 7, version = 1))]
pub struct Tally {
    count: u64,
}

impl Apply<Counted> for Tally {
    fn apply(&mut self, _: &Counted) {
        self.count += 1;
    }
}

const CHILD_ENV: &str = "ES_PROCESSES_CHILD_DB";
const COMMANDS: u32 = 300;
const PROCESSES: usize = 4;

fn command_id(command: u32) -> Uuid {
    Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 + u128::from(command))
}

#[test]
#[ignore = "a child process of `redelivered_commands_apply_once_across_processes`; does nothing on its own"]
fn same_commands_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else { return };
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    runtime.block_on(async {
        let store = SqliteStore::open(&path).expect("open failed");
        let tallies = Repository::<Tally, _>::new(store).with_retry(RetryPolicy::default());
        for command in 0..COMMANDS {
            let options = CommandOptions::default().with_command_id(command_id(command));
            tallies.execute_with("shared", options, |_| Ok(Counted { command })).await.expect("a delivery failed");
        }
        let cached = tallies.load("shared").await.expect("load failed");
        println!("\nchild-result {} {}", cached.count, cached.version);
    });
}

#[test]
fn redelivered_commands_apply_once_across_processes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("shared.db");
    // Create the file (and its schema) before the children race to.
    drop(SqliteStore::open(&path).expect("open failed"));
    let exe = std::env::current_exe().expect("current exe");
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            Command::new(&exe)
                .args(["--ignored", "--exact", "same_commands_child", "--nocapture", "--test-threads=1"])
                .env(CHILD_ENV, &path)
                .stdout(Stdio::piped())
                .spawn()
                .expect("cannot start a child")
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().expect("child failed");
        assert!(output.status.success(), "a child failed: {output:?}");
        let text = String::from_utf8_lossy(&output.stdout);
        let line = text.lines().find(|line| line.starts_with("child-result ")).expect("no result line");
        assert_eq!(line, format!("child-result {COMMANDS} {COMMANDS}"), "a process's cache counts wrong");
    }
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    runtime.block_on(async {
        let store = SqliteStore::open(&path).expect("open failed");
        let stream = StreamId::of::<Tally>("shared");
        assert_eq!(store.stream_version(&stream).await.expect("version"), Version(u64::from(COMMANDS)));
        let snapshot = store.load_snapshot(&stream).await.expect("load_snapshot").expect("a snapshot");
        let state: Tally = serde_json::from_str(&snapshot.state).expect("snapshot decodes");
        assert_eq!(state.count, snapshot.version.0, "the stored snapshot counts an event twice");
        let fresh = Repository::<Tally, _>::new(store).with_cache(0).load("shared").await.expect("load");
        assert_eq!(fresh.count, u64::from(COMMANDS));
    });
}
