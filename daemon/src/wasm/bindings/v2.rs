//! Bindings of `gantry:plugin@2.0.0` (`wit/v2`). Its types are the host's own: every other
//! major converts to them in its module.

pub mod task {
    wasmtime::component::bindgen!({
        path: "../wit/v2",
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
        path: "../wit/v2",
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
