//! Matrix multiply through `matrixmultiply`, with arbitrary strides so that the transposed operands of
//! backward are read in place and weight gradients accumulate with beta = 1.

/// The furthest element a strided m×n view touches, plus one; panics (caught at the boundary) on a view
/// that does not fit its slice — the only thing standing between a wrong stride and memory unsafety.
fn check_view(len: usize, rows: usize, cols: usize, rs: isize, cs: isize) {
    if rows == 0 || cols == 0 {
        return;
    }
    assert!(rs >= 0 && cs >= 0, "gemm: negative strides are not used");
    let last = (rows - 1) * rs as usize + (cols - 1) * cs as usize;
    assert!(last < len, "gemm: a {rows}x{cols} view with strides ({rs},{cs}) overruns a buffer of {len}");
}

/// The name of the sgemm kernel this machine runs.
pub fn kernel_name() -> &'static str {
    "matrixmultiply"
}

macro_rules! gemm_fn {
    ($name:ident, $t:ty, $mm:path) => {
        /// C = alpha·A·B + beta·C, A m×k, B k×n, C m×n, strides in elements.
        #[allow(clippy::too_many_arguments)]
        pub fn $name(
            m: usize, k: usize, n: usize, alpha: $t,
            a: &[$t], rsa: isize, csa: isize,
            b: &[$t], rsb: isize, csb: isize,
            beta: $t, c: &mut [$t], rsc: isize, csc: isize,
        ) {
            check_view(a.len(), m, k, rsa, csa);
            check_view(b.len(), k, n, rsb, csb);
            check_view(c.len(), m, n, rsc, csc);
            if m == 0 || n == 0 {
                return;
            }
            if k == 0 {
                // matrixmultiply handles k = 0, but beta = 0 must also clear NaNs in C.
                for i in 0..m {
                    for j in 0..n {
                        let x = &mut c[i * rsc as usize + j * csc as usize];
                        *x = if beta == 0.0 { 0.0 } else { *x * beta };
                    }
                }
                return;
            }
            // SAFETY: check_view proved that every element each strided view addresses lies inside its
            // slice; C is borrowed mutably, so it cannot alias A or B.
            unsafe {
                $mm(m, k, n, alpha, a.as_ptr(), rsa, csa, b.as_ptr(), rsb, csb, beta, c.as_mut_ptr(), rsc, csc);
            }
        }
    };
}

gemm_fn!(sgemm, f32, matrixmultiply::sgemm);
gemm_fn!(dgemm, f64, matrixmultiply::dgemm);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transposed_strides_match_naive_product() {
        // A is 2x3 stored transposed (3x2 row-major), B is 3x2.
        let at = [1.0f32, 4.0, 2.0, 5.0, 3.0, 6.0];
        let b = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        let mut c = [1.0f32; 4];
        sgemm(2, 3, 2, 1.0, &at, 1, 2, &b, 2, 1, 1.0, &mut c, 2, 1);
        assert_eq!(c, [23.0, 29.0, 50.0, 65.0]);
    }
}
