//! The one wasmtime `Engine` of the process, and the thread that drives epoch interruption.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::limits::Limits;

/// How often the epoch advances. A running guest yields to the executor once per tick and
/// its CPU budget is checked then, so this is the granularity of both.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// How many plugin instances may be alive at once with the pooling allocator.
const POOLED_INSTANCES: u32 = 128;

pub struct WasmEngine {
    engine: Engine,
    pooling: bool,
    ticker: EpochTicker,
}

impl WasmEngine {
    /// Builds the engine. With `pooling` it first tries the pooling allocator (instances are
    /// carved out of pre-reserved memory, so instantiation is cheap) and falls back to
    /// on-demand allocation where the address space cannot be reserved.
    pub fn new(limits: &Limits, pooling: bool) -> anyhow::Result<Self> {
        let (engine, pooling) = if pooling {
            match Engine::new(&config(Some(limits))) {
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
        Ok(WasmEngine {
            engine,
            pooling,
            ticker,
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn pooling(&self) -> bool {
        self.pooling
    }

    /// Whether the epoch thread is still alive (a liveness signal for the watchdog).
    pub fn ticking(&self) -> bool {
        self.ticker
            .handle
            .as_ref()
            .is_some_and(|h| !h.is_finished())
    }
}

fn config(pool: Option<&Limits>) -> Config {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .memory_init_cow(true)
        .max_wasm_stack(1 << 20)
        .async_stack_size(4 << 20)
        .cranelift_opt_level(wasmtime::OptLevel::Speed);
    if let Some(limits) = pool {
        let mut pooling = PoolingAllocationConfig::default();
        pooling
            .total_component_instances(POOLED_INSTANCES)
            .total_core_instances(POOLED_INSTANCES * 8)
            .total_memories(POOLED_INSTANCES * 2)
            .total_tables(POOLED_INSTANCES * 8)
            .max_memory_size(limits.memory_bytes())
            .total_stacks(POOLED_INSTANCES);
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
