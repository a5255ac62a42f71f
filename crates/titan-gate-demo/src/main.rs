//! `titan-gate-demo`: starts a nats-server with Titan's `TITAN_CMD` stream and a titan-gate,
//! then walks through halted, running and halted-again trading with signed orders and the
//! real operator commands. It exits non-zero when any step does not behave as expected,
//! so it doubles as a smoke test.
//!
//! `titan-gate-demo status-page-screenshot PNG` instead writes a screenshot of a halted
//! gate's status page (see `screenshot.rs`).

#![allow(clippy::print_stdout, reason = "printing the walk-through is what the demo is for")]

mod orders;
mod processes;
mod screenshot;
mod stream;

use std::process::ExitCode;

use anyhow::Context as _;
use titan_gate_test_support::NatsServer;

use crate::orders::{Intent, SentOrder, Strategy, expect_admitted, expect_rejected};
use crate::processes::{GATE_ID, GateService, OPS_KEY_ID, Setup, operator_command};
use crate::stream::{CONSUMER, Execution, STREAM};

const fn intent(
    route: &'static str,
    symbol: &'static str,
    kind: &'static str,
    direction: i8,
    size: &'static str,
    prices: [f64; 3],
    source: &'static str,
) -> Intent {
    let [entry, stop_loss, take_profit] = prices;
    Intent { route, symbol, kind, direction, size, entry, stop_loss, take_profit, source }
}

const BTC_LONG: Intent =
    intent("binance.main.BTC_USDT", "BTC/USDT", "BUY_SETUP", 1, "0.05", [97_250.5, 95_800.0, 101_000.0], "scavenger");
const ETH_SHORT: Intent =
    intent("binance.main.ETH_USDT", "ETH/USDT", "SELL_SETUP", -1, "1.2", [3_420.75, 3_510.0, 3_250.0], "hunter");
const SOL_LONG: Intent =
    intent("bybit.main.SOL_USDT", "SOL/USDT", "BUY_SETUP", 1, "25", [187.42, 181.9, 198.5], "sentinel");
/// A size with all 17 significant digits, which a `serde_json` re-serializing verifier can get wrong.
const BTC_PRECISE: Intent = intent(
    "binance.main.BTC_USDT",
    "BTC/USDT",
    "BUY_SETUP",
    1,
    "0.38771252914452203",
    [97_180.0, 95_800.0, 101_000.0],
    "hunter",
);
const ETH_CLOSE_SHORT: Intent =
    intent("binance.main.ETH_USDT", "ETH/USDT", "CLOSE_SHORT", 1, "0.6", [3_401.2, 3_510.0, 3_250.0], "hunter");
const SOL_CLOSE_LONG: Intent =
    intent("bybit.main.SOL_USDT", "SOL/USDT", "CLOSE_LONG", -1, "25", [191.3, 181.9, 198.5], "sentinel");
const BTC_SHORT: Intent =
    intent("binance.main.BTC_USDT", "BTC/USDT", "SELL_SETUP", -1, "0.02", [98_900.0, 99_800.0, 96_500.0], "scavenger");

/// Exit code for invalid arguments (`EX_USAGE`).
const EXIT_USAGE: u8 = 64;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.as_slice() {
        [] => run().map(|()| println!("\nDemo finished: every step behaved as expected.")),
        [command, output] if command == "status-page-screenshot" => screenshot::run(std::path::Path::new(output)),
        _ => {
            eprintln!("invalid arguments {args:?}; usage: titan-gate-demo [status-page-screenshot PNG_PATH]");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("\ntitan-gate-demo failed: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    section("1. Start nats-server with JetStream");
    let mut server = NatsServer::start()
        .context("cannot start nats-server; run scripts/ensure-nats-server.sh or set NATS_SERVER_BIN")?;
    println!("nats-server listening on {}", server.url());

    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")?;
    let result = runtime.block_on(demo(server.url()));
    drop(runtime);
    let stopped = server.stop().context("nats-server did not stop cleanly");
    result.and(stopped)
}

/// Sets up the stream and the gate, runs the walk-through, and stops the gate whatever happened.
async fn demo(nats_url: String) -> anyhow::Result<()> {
    let client = async_nats::connect(nats_url.as_str())
        .await
        .with_context(|| format!("cannot connect to nats-server at {nats_url}"))?;

    section("2. Create the TITAN_CMD stream and the EXECUTION_CORE consumer, as titan-execution-rs does");
    let execution = Execution::create(&async_nats::jetstream::new(client.clone())).await?;
    println!("stream {STREAM}: subjects titan.cmd.>, work-queue retention, 60 s duplicate window");
    println!("consumer {CONSUMER}: durable pull consumer on titan.cmd.execution.>");

    section("3. Start titan-gate");
    let setup = Setup::new(nats_url)?;
    println!(
        "keyring {} holds key {OPS_KEY_ID} (roles halt, resume); TITAN_HMAC_SECRET holds the v1 order secret",
        setup.keyring_path.display()
    );
    let gate = GateService::start(&setup).await?;
    println!("{GATE_ID} is ready: GET {}/readyz returned 200", gate.admin_address());

    let mut walkthrough = Walkthrough {
        setup: &setup,
        strategy: Strategy::new(client, &setup.v1_secret),
        execution,
        admitted: Vec::new(),
        rejected: Vec::new(),
    };
    let result = walkthrough.run().await;

    section("Stop titan-gate (SIGTERM) and nats-server");
    let stopped = gate.stop().await.and_then(|status| {
        println!("titan-gate exited with {status}");
        anyhow::ensure!(status.success(), "titan-gate should exit with 0 after SIGTERM, but exited with {status}");
        Ok(())
    });
    result.and(stopped)
}

/// The walk-through's state: the strategy sending orders, the execution side, and every verdict.
struct Walkthrough<'a> {
    setup: &'a Setup,
    strategy: Strategy,
    execution: Execution,
    admitted: Vec<SentOrder>,
    rejected: Vec<SentOrder>,
}

impl Walkthrough<'_> {
    async fn run(&mut self) -> anyhow::Result<()> {
        section("4. The gate starts in HARD_HALT (INITIAL_STATE): an order is rejected");
        self.send_rejected(&[BTC_LONG]).await?;

        section("5. An operator resumes trading with a signed command");
        self.operator(&["resume", "--reason", "demo: pre-open checks done", "--operator", "demo"]).await?;

        section("6. Five signed orders are admitted and forwarded to TITAN_CMD");
        self.send_admitted(&[BTC_LONG, ETH_SHORT, SOL_LONG, BTC_PRECISE, ETH_CLOSE_SHORT]).await?;

        section("7. What the execution service sees");
        self.show_stream().await?;

        section("8. Kill switch: an operator halts every gate");
        self.operator(&["halt", "--reason", "demo kill switch", "--operator", "demo"]).await?;

        section("9. Three orders while halted are rejected, even a reducing CLOSE_LONG");
        self.send_rejected(&[BTC_LONG, SOL_LONG, SOL_CLOSE_LONG]).await?;

        section("10. Status of every gate replica");
        self.operator(&["status"]).await?;

        section("11. Resume again: two orders are admitted");
        self.operator(&["resume", "--reason", "demo: incident closed", "--operator", "demo"]).await?;
        self.send_admitted(&[BTC_SHORT, SOL_CLOSE_LONG]).await?;

        section("12. Summary");
        self.summarize().await
    }

    async fn operator(&self, args: &[&str]) -> anyhow::Result<()> {
        let succeeded = operator_command(self.setup, args).await?;
        anyhow::ensure!(succeeded, "titan-gate {} should exit with 0; its output is above", args.join(" "));
        Ok(())
    }

    async fn send_admitted(&mut self, intents: &[Intent]) -> anyhow::Result<()> {
        for intent in intents {
            let order = self.strategy.send(intent).await?;
            expect_admitted(&order)?;
            self.admitted.push(order);
        }
        Ok(())
    }

    async fn send_rejected(&mut self, intents: &[Intent]) -> anyhow::Result<()> {
        for intent in intents {
            let order = self.strategy.send(intent).await?;
            expect_rejected(&order, "system_halted")?;
            self.rejected.push(order);
        }
        println!("(the gate's log above shows a WARN line \"Order Rejected: System Halted\" for each)");
        Ok(())
    }

    /// Prints the stream counts, then fetches one order and checks it is byte-identical.
    async fn show_stream(&mut self) -> anyhow::Result<()> {
        let (messages, pending) = self.execution.counts().await?;
        println!(
            "{STREAM} holds {messages} messages: the orders and the operator commands, since it captures titan.cmd.>"
        );
        println!("{CONSUMER} has {pending} orders pending");
        anyhow::ensure!(
            pending == count(&self.admitted),
            "{CONSUMER} should have {} orders pending, but has {pending}",
            self.admitted.len()
        );

        let fetched = self.execution.take_one().await?;
        println!("fetched and acknowledged one order from {CONSUMER}: subject {}", fetched.subject);
        println!("  Nats-Msg-Id {}, Titan-Gate-Id {}", fetched.msg_id, fetched.gate_id);
        let sent = self.admitted.iter().find(|order| order.body == fetched.payload);
        let sent = sent.with_context(|| {
            format!(
                "the fetched order is not byte-identical to any order sent: {}",
                String::from_utf8_lossy(&fetched.payload)
            )
        })?;
        println!("  byte-identical to order {} as the strategy sent it ({} bytes)", sent.signal_id, sent.body.len());
        Ok(())
    }

    /// Prints the counts and checks that every admitted order, and no rejected one, is stored.
    async fn summarize(&mut self) -> anyhow::Result<()> {
        let (messages, pending) = self.execution.counts().await?;
        let stored = self.execution.stored_order_ids().await?;
        println!("orders admitted: {}", self.admitted.len());
        println!("orders rejected: {} (all system_halted)", self.rejected.len());
        println!(
            "{STREAM}: {messages} messages; {CONSUMER}: {pending} orders pending (one was fetched and acknowledged)"
        );

        let is_stored = |order: &SentOrder| stored.iter().any(|id| id.ends_with(&order.signal_id));
        let leaked: Vec<&str> =
            self.rejected.iter().filter(|order| is_stored(order)).map(|order| order.signal_id.as_str()).collect();
        anyhow::ensure!(leaked.is_empty(), "rejected orders were found in {STREAM}: {}", leaked.join(", "));
        let expected_pending = count(&self.admitted) - 1;
        anyhow::ensure!(
            pending == expected_pending,
            "{CONSUMER} should have {expected_pending} orders pending, but has {pending}"
        );
        let stored_admitted = self.admitted.iter().filter(|order| is_stored(order)).count();
        anyhow::ensure!(
            stored_admitted + 1 == self.admitted.len(),
            "{STREAM} should contain every admitted order except the acknowledged one, but contains {stored_admitted} of {}",
            self.admitted.len()
        );
        println!("no rejected order reached {STREAM}; every admitted order did");
        Ok(())
    }
}

fn count(orders: &[SentOrder]) -> u64 {
    u64::try_from(orders.len()).unwrap_or(u64::MAX)
}

fn section(title: &str) {
    println!("\n=== {title} ===");
}
