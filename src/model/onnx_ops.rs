//! Quantized ONNX operators that tract 0.23 does not know, registered
//! through tract-onnx's public `op_register` so that an integer ResNet runs
//! on integer kernels end to end.
//!
//! onnxruntime's `quantize_static(quant_format=QOperator)` writes the
//! residual additions and the global average pool as Microsoft-domain ops
//! (`com.microsoft.QLinearAdd`, `com.microsoft.QLinearGlobalAveragePool`).
//! tract reads op names without their domain, so registering these names is
//! enough. Without them such a model does not load; with the additions left
//! in float instead, each block pays a dequantize and a scalar requantize
//! loop (14 ms of a ResNet-152 window here, see `models/REPORT.md`).
//!
//! `QLinearAdd` becomes one element-wise pass over two int8 tensors
//! ([`QAdd`]), written so the compiler vectorises it; with broadcasting it
//! falls back to tract's own dequantize → add → quantize. The pool is wired
//! from tract's dequantize, sum and quantize ops (it runs once per window on
//! a small tensor). Semantics are ONNX's: `y = saturate(round_half_even(x /
//! y_scale) + y_zero_point)` with `x` the dequantized result.
//!
//! Nothing here runs per sample on the audio path; these ops only exist
//! inside a loaded model.

use tract_onnx::model::{OnnxOpRegister, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;
use tract_onnx::tract_hir::ops::expandable::expand;
use tract_onnx::tract_hir::tract_core::ops::nn::{Reduce, Reducer};
use tract_onnx::tract_hir::tract_core::ops::quant::{
    DequantizeLinearF32, quantize_linear_i8, quantize_linear_u8,
};

/// Adds the operators of this module to an ONNX parser's register.
pub fn register(reg: &mut OnnxOpRegister) {
    reg.insert("QLinearAdd", |_ctx: &ParsingContext, _node: &NodeProto| {
        Ok((expand(QLinearAdd), vec![]))
    });
    reg.insert(
        "QLinearGlobalAveragePool",
        |_ctx: &ParsingContext, node: &NodeProto| {
            let channels_last = node.get_attr_opt::<i64>("channels_last")?.unwrap_or(0);
            ensure!(
                channels_last == 0,
                "QLinearGlobalAveragePool: channels_last=1 is not supported"
            );
            Ok((expand(QLinearGlobalAveragePool), vec![]))
        },
    );
}

/// A per-tensor quantization parameter pair read from constant inputs.
#[derive(Debug, Clone, Copy, PartialEq)]
struct QParam {
    scale: f32,
    zero_point: i32,
    dt: DatumType,
}

/// Reads `scale` and `zero_point` (both must be constants of one value).
fn qparam(model: &TypedModel, scale: OutletId, zero_point: OutletId) -> TractResult<QParam> {
    let s = model
        .outlet_fact(scale)?
        .konst
        .clone()
        .context("quantization scale must be a constant")?;
    let z = model
        .outlet_fact(zero_point)?
        .konst
        .clone()
        .context("zero point must be a constant")?;
    ensure!(
        s.len() == 1 && z.len() == 1,
        "only per-tensor quantization is supported here (got {} scales)",
        s.len()
    );
    let scale = s.cast_to_scalar::<f32>()?;
    ensure!(
        scale.is_finite() && scale > 0.0,
        "quantization scale must be finite and positive, got {scale}"
    );
    let dt = z.datum_type();
    ensure!(
        dt == i8::datum_type() || dt == u8::datum_type(),
        "only int8 and uint8 are supported, got {dt:?}"
    );
    Ok(QParam {
        scale,
        zero_point: z.cast_to_scalar::<i32>()?,
        dt,
    })
}

/// Wires tract's own per-tensor quantizer for `q` after `wire`.
fn wire_quantize(
    model: &mut TypedModel,
    name: String,
    wire: OutletId,
    q: QParam,
) -> TractResult<OutletId> {
    let op = if q.dt == u8::datum_type() {
        quantize_linear_u8(q.scale.recip(), q.zero_point as u8)
    } else {
        quantize_linear_i8(q.scale.recip(), q.zero_point as i8)
    };
    Ok(model.wire_node(name, op, &[wire])?[0])
}

/// `com.microsoft.QLinearAdd(A, A_scale, A_zp, B, B_scale, B_zp, C_scale, C_zp)`.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct QLinearAdd;

impl Expansion for QLinearAdd {
    fn name(&self) -> StaticName {
        "QLinearAdd".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> TractResult<()> {
        ensure!(
            inputs.len() == 8 || inputs.len() == 7,
            "QLinearAdd takes 7 or 8 inputs, got {}",
            inputs.len()
        );
        check_output_arity(outputs, 1)?;
        s.equals(&inputs[0].datum_type, &outputs[0].datum_type)?;
        s.equals(&inputs[3].datum_type, &outputs[0].datum_type)?;
        s.with(&inputs[0].shape, move |s, a| {
            s.with(&inputs[3].shape, move |s, b| {
                if let Ok(Some(c)) =
                    tract_onnx::tract_hir::infer::helpers::infer_shape_broadcasting(&[&a, &b])
                {
                    s.equals(&outputs[0].shape, c)?;
                }
                Ok(())
            })
        })
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let a = qparam(model, inputs[1], inputs[2])?;
        let b = qparam(model, inputs[4], inputs[5])?;
        // C_zp is optional (then uint8 zero, per the contrib op's spec).
        let c = if inputs.len() == 8 {
            qparam(model, inputs[6], inputs[7])?
        } else {
            let s = model.outlet_fact(inputs[6])?.konst.clone();
            let scale = s
                .context("C_scale must be a constant")?
                .cast_to_scalar::<f32>()?;
            QParam {
                scale,
                zero_point: 0,
                dt: u8::datum_type(),
            }
        };
        ensure!(
            a.dt == c.dt && b.dt == c.dt,
            "QLinearAdd with mixed int8/uint8 operands is not supported"
        );
        let (fa, fb) = (model.outlet_fact(inputs[0])?, model.outlet_fact(inputs[3])?);
        if fa.shape == fb.shape {
            let op = QAdd {
                ka: a.scale / c.scale,
                za: a.zero_point,
                kb: b.scale / c.scale,
                zb: b.zero_point,
                zc: c.zero_point,
                dt: c.dt,
            };
            return model.wire_node(prefix, op, &[inputs[0], inputs[3]]);
        }
        // Broadcasting: dequantize, add, requantize with tract's ops.
        let da = model.wire_node(
            format!("{prefix}.dequant_a"),
            DequantizeLinearF32::new(a.scale, a.zero_point),
            &[inputs[0]],
        )?[0];
        let db = model.wire_node(
            format!("{prefix}.dequant_b"),
            DequantizeLinearF32::new(b.scale, b.zero_point),
            &[inputs[3]],
        )?[0];
        let sum = tract_onnx::tract_hir::tract_core::ops::change_axes::wire_with_rank_broadcast(
            format!("{prefix}.add"),
            model,
            tract_onnx::tract_hir::tract_core::ops::math::add(),
            &[da, db],
        )?[0];
        Ok(tvec!(wire_quantize(model, prefix.to_string(), sum, c)?))
    }
}

/// `com.microsoft.QLinearGlobalAveragePool(X, x_scale, x_zp, y_scale, y_zp)`,
/// NCHW.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct QLinearGlobalAveragePool;

impl Expansion for QLinearGlobalAveragePool {
    fn name(&self) -> StaticName {
        "QLinearGlobalAveragePool".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> TractResult<()> {
        check_input_arity(inputs, 5)?;
        check_output_arity(outputs, 1)?;
        s.equals(&inputs[0].datum_type, &outputs[0].datum_type)?;
        s.equals(&inputs[0].rank, &outputs[0].rank)?;
        s.equals(&inputs[0].shape[0], &outputs[0].shape[0])?;
        s.equals(&inputs[0].shape[1], &outputs[0].shape[1])?;
        s.given(&inputs[0].rank, move |s, rank| {
            for axis in 2..rank as usize {
                s.equals(&outputs[0].shape[axis], 1.to_dim())?;
            }
            Ok(())
        })
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let x = qparam(model, inputs[1], inputs[2])?;
        let y = qparam(model, inputs[3], inputs[4])?;
        let fact = model.outlet_fact(inputs[0])?.clone();
        let rank = fact.rank();
        ensure!(
            rank >= 3,
            "QLinearGlobalAveragePool needs N, C and spatial axes"
        );
        let mut spatial = 1usize;
        for d in fact.shape.iter().skip(2) {
            spatial = spatial.saturating_mul(d.to_usize().context("spatial size must be known")?);
        }
        ensure!(spatial > 0, "QLinearGlobalAveragePool over an empty tensor");
        // The mean's 1/(H·W) is folded into the dequantization scale.
        let wire = model.wire_node(
            format!("{prefix}.dequant"),
            DequantizeLinearF32::new(x.scale / spatial as f32, x.zero_point),
            &[inputs[0]],
        )?[0];
        let wire = model.wire_node(
            format!("{prefix}.sum"),
            Reduce::new((2..rank).collect(), Reducer::Sum),
            &[wire],
        )?[0];
        Ok(tvec!(wire_quantize(model, prefix.to_string(), wire, y)?))
    }
}

/// Element-wise `saturate(round_half_even(ka·(a − za) + kb·(b − zb)) + zc)`
/// over two same-shaped int8 (or uint8) tensors: `QLinearAdd` with
/// `ka = a_scale / c_scale`, `kb = b_scale / c_scale`.
#[derive(Debug, Clone, PartialEq)]
pub struct QAdd {
    ka: f32,
    za: i32,
    kb: f32,
    zb: i32,
    zc: i32,
    dt: DatumType,
}

impl Eq for QAdd {}

impl std::hash::Hash for QAdd {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.ka.to_bits().hash(state);
        self.za.hash(state);
        self.kb.to_bits().hash(state);
        self.zb.hash(state);
        self.zc.hash(state);
        self.dt.hash(state);
    }
}

/// Rounds half to even for `|x| < 2^22`, in a form that vectorises (adding
/// and subtracting 1.5·2^23 leaves the nearest integer, ties to even, under
/// the default rounding mode).
#[inline(always)]
fn round_half_even_small(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    (x + MAGIC) - MAGIC
}

/// The kernel of [`QAdd`], generic over the integer type: float
/// arithmetic on small integers, every step of which vectorises.
#[inline(always)]
fn qadd_slice<T: Copy>(
    op: &QAdd,
    a: &[T],
    b: &[T],
    c: &mut [T],
    to_f32: impl Fn(T) -> f32,
    from_i32: impl Fn(i32) -> T,
    (lo, hi): (f32, f32),
) {
    let (ka, kb) = (op.ka, op.kb);
    let (za, zb) = (op.za as f32, op.zb as f32);
    let zc = op.zc as f32;
    // Clamping before rounding keeps the argument small enough for the
    // rounding trick; values beyond it saturate the same way.
    let (pre_lo, pre_hi) = (lo - zc - 1.0, hi - zc + 1.0);
    let n = c.len().min(a.len()).min(b.len());
    let (a, b, c) = (&a[..n], &b[..n], &mut c[..n]);
    for i in 0..n {
        // As onnxruntime's MLAS computes it: zero points off first (exact
        // on small integers), then the two scale ratios.
        let x = ka * (to_f32(a[i]) - za) + kb * (to_f32(b[i]) - zb);
        let x = x.max(pre_lo).min(pre_hi);
        let y = (round_half_even_small(x) + zc).max(lo).min(hi);
        // In range and integral after the clamps: the unchecked
        // conversion is exact (and, unlike `as`, needs no NaN handling).
        c[i] = from_i32(unsafe { y.to_int_unchecked::<i32>() });
    }
}

/// [`qadd_slice`] for int8, compiled for AVX2 too and picked at run time
/// on x86_64 (the baseline there is SSE2, 3× slower on this loop); NEON is
/// the baseline on aarch64.
fn qadd_i8(op: &QAdd, a: &[i8], b: &[i8], c: &mut [i8]) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma")]
        fn avx2(op: &QAdd, a: &[i8], b: &[i8], c: &mut [i8]) {
            qadd_slice(op, a, b, c, |x| x as f32, |x| x as i8, (-128.0, 127.0));
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has the features the function is compiled for.
            return unsafe { avx2(op, a, b, c) };
        }
    }
    qadd_slice(op, a, b, c, |x| x as f32, |x| x as i8, (-128.0, 127.0));
}

impl Op for QAdd {
    fn name(&self) -> StaticName {
        "QAdd".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "c = sat(round(a·{} + b·{}) + {}), zero points a {} b {}",
            self.ka, self.kb, self.zc, self.za, self.zb
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for QAdd {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (a, b) = (&inputs[0], &inputs[1]);
        ensure!(a.shape() == b.shape(), "QAdd: operand shapes differ");
        let mut c = unsafe { Tensor::uninitialized_dt(self.dt, a.shape())? };
        if self.dt == i8::datum_type() {
            qadd_i8(
                self,
                a.try_as_plain_ram()?.as_slice::<i8>()?,
                b.try_as_plain_ram()?.as_slice::<i8>()?,
                c.try_as_plain_ram_mut()?.as_slice_mut::<i8>()?,
            );
        } else {
            qadd_slice(
                self,
                a.try_as_plain_ram()?.as_slice::<u8>()?,
                b.try_as_plain_ram()?.as_slice::<u8>()?,
                c.try_as_plain_ram_mut()?.as_slice_mut::<u8>()?,
                |x| x as f32,
                |x| x as u8,
                (0.0, 255.0),
            );
        }
        Ok(tvec!(c.into_tvalue()))
    }
}

impl TypedOp for QAdd {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs[0].datum_type == self.dt && inputs[1].datum_type == self.dt);
        Ok(tvec!(self.dt.fact(inputs[0].shape.clone())))
    }

    fn axes_mapping(
        &self,
        inputs: &[&TypedFact],
        outputs: &[&TypedFact],
    ) -> TractResult<AxesMapping> {
        AxesMapping::natural(inputs, outputs)
    }

    fn change_axes(
        &self,
        model: &TypedModel,
        node: &TypedNode,
        _io: InOut,
        change: &AxisOp,
    ) -> TractResult<Option<AxisChangeConsequence>> {
        Ok(Some(AxisChangeConsequence::new(model, node, None, change)))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ONNX's reference: dequantize both, add, quantize (ties to even).
    fn reference(op: &QAdd, sa: f32, sb: f32, sc: f32, a: i8, b: i8) -> i8 {
        let x = sa * (a as i32 - op.za) as f32 + sb * (b as i32 - op.zb) as f32;
        ((x / sc).round_ties_even() as i32 + op.zc).clamp(-128, 127) as i8
    }

    #[test]
    fn qadd_matches_dequantize_add_quantize_on_every_pair() {
        let (sa, sb, sc) = (0.05f32, 0.031f32, 0.07f32);
        let op = QAdd {
            ka: sa / sc,
            za: -3,
            kb: sb / sc,
            zb: 10,
            zc: -128,
            dt: i8::datum_type(),
        };
        let all: Vec<i8> = (-128..=127).collect();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for &x in &all {
            for &y in &all {
                a.push(x);
                b.push(y);
            }
        }
        let mut c = vec![0i8; a.len()];
        qadd_slice(
            &op,
            &a,
            &b,
            &mut c,
            |x| x as f32,
            |x| x as i8,
            (-128.0, 127.0),
        );
        let mut off = 0;
        for i in 0..a.len() {
            let want = reference(&op, sa, sb, sc, a[i], b[i]);
            if c[i] != want {
                // Only where the exact value sits on a rounding tie may the
                // order of float operations (x / c_scale against the
                // precomputed ratios) round the other way.
                let x =
                    (sa * (a[i] as i32 - op.za) as f32 + sb * (b[i] as i32 - op.zb) as f32) / sc;
                let from_tie = (x - x.floor() - 0.5).abs();
                assert!(
                    (c[i] as i32 - want as i32).abs() == 1 && from_tie < 1e-4,
                    "{} + {}: {} against {want} ({x})",
                    a[i],
                    b[i],
                    c[i]
                );
                off += 1;
            }
        }
        assert!(off < a.len() / 200, "{off} of {} differ", a.len());
        // A zero point of -128 with a non-negative range is a fused ReLU.
        assert!(c.iter().all(|&x| x >= -128));
    }

    #[test]
    fn rounding_trick_is_half_even() {
        for (x, want) in [
            (0.5f32, 0.0),
            (1.5, 2.0),
            (2.5, 2.0),
            (-0.5, -0.0),
            (-1.5, -2.0),
            (3.2, 3.0),
            (-3.7, -4.0),
        ] {
            assert_eq!(round_half_even_small(x), want, "{x}");
        }
    }
}
