//! The smol / futures-io adapter for `kubecast-core`. Empty until the runtime-smol issue (#6) lands.
