// Verifier errors of momentum SGD and Adam on quantized params, one case per chunk.
// RUN: tinymlir-opt %s --split-input-file --verify-diagnostics | filecheck %s

train.param @q trainable : tensor<4x!quant.uniform<i8:f32, 0.5:0>> = dense<0> : tensor<4xi8>
train.param @v : tensor<4x!quant.uniform<i8:f32, 0.5:0>> = dense<0> : tensor<4xi8>
func.func @sgd_quantized_velocity_type(%g: tensor<4xf32>, %lr: f32) {
  train.sgd @q, %g, %lr {momentum = 0.9 : f32, velocity = @v} : tensor<4xf32>
  func.return
}

// CHECK: train.sgd: velocity @v of the quantized @q must be a tensor of f32 of its shape [4], got tensor<4x!quant.uniform<i8:f32, 0.5:0>>

// -----

train.param @q trainable : tensor<4x2x!quant.uniform<i8:f32, 0.5:0>> = dense<0> : tensor<4x2xi8>
train.param @v : tensor<3x2xf32> = dense<0.0> : tensor<3x2xf32>
func.func @sgd_quantized_velocity_rows(%g: tensor<2x2xf32>, %lr: f32) {
  train.sgd @q, %g, %lr {momentum = 0.9 : f32, velocity = @v, channels = array<i64: 0, 3>} : tensor<2x2xf32>
  func.return
}

// CHECK: train.sgd: velocity @v of the quantized @q must be a tensor of f32 of its shape [4, 2] (or its trained rows' [2, 2]), got tensor<3x2xf32>

// -----

train.param @q trainable : tensor<4x!quant.uniform<i8:f32, 0.5:0>> = dense<0> : tensor<4xi8>
train.param @m : tensor<4xf32> = dense<0.0> : tensor<4xf32>
train.param @v : tensor<4xf32> = dense<0.0> : tensor<4xf32>
train.param @step : tensor<i32> = dense<0> : tensor<i32>
func.func @adam_quantized_eps(%g: tensor<4xf32>, %lr: f32) {
  train.adam @q, %g, %lr {beta1 = 0.9 : f32, beta2 = 0.999 : f32, eps = -1.0 : f32, m = @m, v = @v, step = @step} : tensor<4xf32>
  func.return
}

// CHECK: train.adam: eps must be positive and finite (in float32), got -1.0

// -----

train.param @q trainable : tensor<4x!quant.uniform<i8:f32, 0.5:0>> = dense<0> : tensor<4xi8>
train.param @m : tensor<4xf32> = dense<0.0> : tensor<4xf32>
train.param @v : tensor<4xf32> = dense<0.0> : tensor<4xf32>
train.param @step : tensor<i32> = dense<0> : tensor<i32>
func.func @adam_quantized_stochastic(%g: tensor<4xf32>, %lr: f32) {
  train.adam @q, %g, %lr {beta1 = 0.9 : f32, beta2 = 0.999 : f32, eps = 1.0e-08 : f32, m = @m, v = @v, step = @step, rounding = "stochastic"} : tensor<4xf32>
  func.return
}

// CHECK: train.adam: stochastic rounding and its 'rng' state go together

// -----

train.param @w trainable : tensor<4xf32> = dense<0.0> : tensor<4xf32>
train.param @m : tensor<4xf32> = dense<0.0> : tensor<4xf32>
train.param @v : tensor<4xf32> = dense<0.0> : tensor<4xf32>
train.param @step : tensor<i32> = dense<0> : tensor<i32>
func.func @adam_float_rounding(%g: tensor<4xf32>, %lr: f32) {
  train.adam @w, %g, %lr {beta1 = 0.9 : f32, beta2 = 0.999 : f32, eps = 1.0e-08 : f32, m = @m, v = @v, step = @step, rounding = "nearest"} : tensor<4xf32>
  func.return
}

// CHECK: train.adam: rounding applies to quantized parameters only, @w is float

// -----

train.param @w trainable : tensor<4xf32> = dense<0.0> : tensor<4xf32>
train.param @m : tensor<4xf32> = dense<0.0> : tensor<4xf32>
train.param @v : tensor<4xf32> = dense<0.0> : tensor<4xf32>
train.param @step : tensor<i32> = dense<0> : tensor<i32>
func.func @fused_adam_float(%dy: tensor<1x4xf32>, %lr: f32) {
  train.bias_grad_sgd @w, %dy, %lr {beta1 = 0.9 : f32, beta2 = 0.999 : f32, eps = 1.0e-08 : f32, m = @m, v = @v, step = @step} : tensor<1x4xf32>
  func.return
}

// CHECK: train.bias_grad_sgd: a fused Adam update needs a quantized parameter, @w is float (use train.adam)

// -----

train.param @q trainable : tensor<4x!quant.uniform<i32:f32, 0.5:0>> = dense<0> : tensor<4xi32>
train.param @m : tensor<4xf32> = dense<0.0> : tensor<4xf32>
train.param @step : tensor<i32> = dense<0> : tensor<i32>
func.func @fused_adam_partial(%dy: tensor<1x4xf32>, %lr: f32) {
  train.bias_grad_sgd @q, %dy, %lr {beta1 = 0.9 : f32, m = @m, step = @step} : tensor<1x4xf32>
  func.return
}

// CHECK: train.bias_grad_sgd: Adam's 'beta1', 'beta2', 'eps', 'm', 'v' and 'step' go together
