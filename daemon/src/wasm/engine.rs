//! The one wasmtime `Engine` of the process, and the thread that drives epoch interruption.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::Semaphore;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::limits::Limits;

/// How often the epoch advances. A running guest yields to the executor once per tick and
/// its CPU budget is checked then, so this is the granularity of both.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// How many plugin instances may be alive at once with the pooling allocator, unless
/// `[wasm] instances` says otherwise.
pub const DEFAULT_INSTANCES: u32 = 1024;

/// Bytes of each memory, table and stack slot kept resident (and zeroed) between calls.
const KEEP_RESIDENT: usize = 256 << 10;

pub struct WasmEngine {
    engine: Engine,
    pooling: bool,
    /// One permit per instance slot of the pool. Instantiating past the pool's size fails,
    /// so a call waits here for a free slot instead. None without the pool (no fixed size).
    slots: Option<Arc<Semaphore>>,
    ticker: EpochTicker,
}

impl WasmEngine {
    /// Builds the engine. With `pooling` it first tries the pooling allocator (instances are
    /// carved out of pre-reserved memory, so instantiation is cheap) and falls back to
    /// on-demand allocation where the address space cannot be reserved. `instances` sizes
    /// the pool: how many plugin calls may be alive at once (more wait for a slot).
    pub fn new(limits: &Limits, pooling: bool, instances: u32) -> anyhow::Result<Self> {
        let instances = instances.max(1);
        let (engine, pooling) = if pooling {
            match Engine::new(&config(Some((limits, instances)))) {
                Ok(engine) => (engine, true),
                Err(e) => {
                    tracing::warn!(error = %e, "pooling allocator unavailable; using on-demand allocation");
                    (Engine::new(&config(None))?, false)
                }
            }
        } else {
            (Engine::new(&config(None))?, false)
        };
        let ticker = EpochTicker::start(engine.clone())?;
        let slots = pooling.then(|| Arc::new(Semaphore::new(instances as usize)));
        Ok(WasmEngine {
            engine,
            pooling,
            slots,
            ticker,
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn pooling(&self) -> bool {
        self.pooling
    }

    /// The pool's instance slots, which every call holds one of while its store lives.
    pub fn slots(&self) -> Option<Arc<Semaphore>> {
        self.slots.clone()
    }

    /// Whether the epoch thread is still alive (a liveness signal for the watchdog).
    pub fn ticking(&self) -> bool {
        self.ticker
            .handle
            .as_ref()
            .is_some_and(|h| !h.is_finished())
    }
}

fn config(pool: Option<(&Limits, u32)>) -> Config {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .memory_init_cow(true)
        .max_wasm_stack(1 << 20)
        .async_stack_size(4 << 20)
        .cranelift_opt_level(wasmtime::OptLevel::Speed);
    if let Some((limits, instances)) = pool {
        let mut pooling = PoolingAllocationConfig::default();
        pooling
            .total_component_instances(instances)
            .total_core_instances(instances.saturating_mul(8))
            .total_memories(instances.saturating_mul(2))
            .total_tables(instances.saturating_mul(8))
            .max_memory_size(limits.memory_bytes())
            .total_stacks(instances)
            // A call touches little memory and every task is a new instance: zeroing what a
            // slot used beats handing the pages back and faulting them in again next time.
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(KEEP_RESIDENT)
            .async_stack_keep_resident(KEEP_RESIDENT)
            // Not PAGEMAP_SCAN, though it resets only the dirty pages: as of wasmtime 48 it
            // neither resets nor drops a dirty page that is not present (swapped out, or
            // being migrated), and the next instance in the slot, of any plugin, would read
            // what the last one left there.
            .pagemap_scan(wasmtime::Enabled::No);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
    }
    config
}

struct EpochTicker {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: Engine) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("gantry-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })?;
        Ok(EpochTicker {
            stop,
            handle: Some(handle),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}
