//! Bindings generated from `wit/v2` (`gantry:plugin@2.0.0`). Both worlds share one set of types.

/// The `task-plugin` world.
pub mod task {
    wit_bindgen::generate!({
        path: "../wit/v2",
        world: "task-plugin",
        pub_export_macro: true,
        export_macro_name: "__export_task_plugin",
        default_bindings_module: "::gantry_sdk::bindings::task",
        runtime_path: "::gantry_sdk::__private::wit_bindgen::rt",
        type_section_suffix: "gantry-task",
    });
}

/// The `hook-plugin` world.
pub mod hook {
    wit_bindgen::generate!({
        path: "../wit/v2",
        world: "hook-plugin",
        pub_export_macro: true,
        export_macro_name: "__export_hook_plugin",
        default_bindings_module: "::gantry_sdk::bindings::hook",
        runtime_path: "::gantry_sdk::__private::wit_bindgen::rt",
        type_section_suffix: "gantry-hook",
        with: {
            "gantry:plugin/types@2.0.0": crate::bindings::task::gantry::plugin::types,
            "gantry:plugin/log@2.0.0": crate::bindings::task::gantry::plugin::log,
            "gantry:plugin/process@2.0.0": crate::bindings::task::gantry::plugin::process,
        },
    });
}

pub use task::gantry::plugin::{kube, log, process, types};
