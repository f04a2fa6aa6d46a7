//! The data objects the `JitModule` suites define on every machine: a
//! writable `counter`, a read-only `table`, a zero-initialised `zeros` and
//! a read-only `ptrs` that holds relocated addresses.

use cranelift_exn::cranelift_module::{DataDescription, DataId, FuncId, Linkage, Module};

/// The ids of the declared data objects.
pub struct DataObjects {
    pub counter: DataId,
    pub table: DataId,
    pub zeros: DataId,
    pub ptrs: DataId,
}

impl DataObjects {
    /// Declare `counter` (writable, exported), `table` (read-only, local),
    /// `zeros` (writable, local) and `ptrs` (read-only, `ptrs_linkage`).
    pub fn declare(m: &mut impl Module, ptrs_linkage: Linkage) -> Self {
        DataObjects {
            counter: m
                .declare_data("counter", Linkage::Export, true, false)
                .unwrap(),
            table: m
                .declare_data("table", Linkage::Local, false, false)
                .unwrap(),
            zeros: m
                .declare_data("zeros", Linkage::Local, true, false)
                .unwrap(),
            ptrs: m.declare_data("ptrs", ptrs_linkage, false, false).unwrap(),
        }
    }

    /// Define `ptrs` as `[&function, &table + 16]`.
    pub fn define_ptrs(&self, m: &mut impl Module, function: FuncId) {
        let mut d = DataDescription::new();
        d.define_zeroinit(16);
        let f = m.declare_func_in_data(function, &mut d);
        d.write_function_addr(0, f);
        let g = m.declare_data_in_data(self.table, &mut d);
        d.write_data_addr(8, g, 16);
        m.define_data(self.ptrs, &d).unwrap();
    }
}
