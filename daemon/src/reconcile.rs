//! Reconciler: applies each new graph by diffing links keyed on
//! (consumer, name, target).
