//! Host-side bindings generated from `wit/gantry.wit`. Both worlds share the `types`, `log`
//! and `process` interfaces so one host implementation serves both.

pub mod task {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "task-plugin",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "gantry:plugin/kube.session": crate::host::kube::Session,
        },
    });
}

pub mod hook {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "hook-plugin",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "gantry:plugin/types": super::task::gantry::plugin::types,
            "gantry:plugin/log": super::task::gantry::plugin::log,
            "gantry:plugin/process": super::task::gantry::plugin::process,
        },
    });
}

pub use task::gantry::plugin::{kube, log, process, types};
