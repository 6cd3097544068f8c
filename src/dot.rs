//! Graphviz DOT export of the graph behind a tensor: one box per tensor (shape, dtype, whether it
//! requires grad), one ellipse per op, edges in the direction data flows.

use crate::error::Result;
use crate::graph::{Graph, Tensor};
use std::collections::HashSet;
use std::fmt::Write;

impl Graph {
    /// The DOT source of everything `root` was computed from. Leaves that require grad are filled.
    pub fn to_dot(&self, root: Tensor) -> Result<String> {
        self.entry(root)?;
        let mut out = String::from("digraph backprop {\n  rankdir=BT;\n  node [fontname=\"Helvetica\", fontsize=10];\n");
        let mut seen = HashSet::new();
        let mut stack = vec![root];
        while let Some(t) = stack.pop() {
            if !seen.insert(t) {
                continue;
            }
            let Ok(e) = self.entry(t) else {
                let _ = writeln!(out, "  t{} [label=\"(freed)\", shape=box, style=dashed];", t.index);
                continue;
            };
            let fill = if e.requires_grad && e.node.is_none() { ", style=filled, fillcolor=\"#cde8ff\"" } else { "" };
            let _ = writeln!(
                out,
                "  t{} [label=\"{:?} {}{}{}\", shape=box{}];",
                t.index,
                e.shape,
                e.buf.dtype().name(),
                if e.requires_grad { "\\nrequires_grad" } else { "" },
                if e.persistent { "\\npersistent" } else { "" },
                fill
            );
            if let Some(n) = e.node {
                let node = &self.nodes[n as usize];
                let _ = writeln!(out, "  n{} [label=\"{}\", shape=ellipse];", n, node.op.kind().name());
                let _ = writeln!(out, "  n{} -> t{};", n, t.index);
                for &i in node.op.inputs().as_slice() {
                    let _ = writeln!(out, "  t{} -> n{};", i.index, n);
                    stack.push(i);
                }
            }
        }
        out.push_str("}\n");
        Ok(out)
    }
}
