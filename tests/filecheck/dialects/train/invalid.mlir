// Each verifier error of the train dialect: one case per split-input chunk.
// RUN: tinymlir-opt %s --split-input-file --verify-diagnostics | filecheck %s

train.param @w : tensor<4x3xf32> = dense<0.0> : tensor<3x4xf32>

// CHECK: train.param @w: value shape [3, 4] differs from the type's shape [4, 3]

// -----

train.param @q : tensor<4x!quant.uniform<i8:f32, 0.5:0>> = dense<0> : tensor<4xi32>

// CHECK: train.param @q: a quantized parameter stores 8-bit integers, got i32

// -----

train.param @w : tensor<4xf32> = dense<0.0> : tensor<4xf32>
func.func @load_type() -> tensor<5xf32> {
  %w = train.load @w : tensor<5xf32>
  func.return %w : tensor<5xf32>
}

// CHECK: train.load: @w has type tensor<4xf32>, not tensor<5xf32>

// -----

func.func @load_missing() -> tensor<5xf32> {
  %w = train.load @nowhere : tensor<5xf32>
  func.return %w : tensor<5xf32>
}

// CHECK: train.load: no symbol @nowhere in the enclosing module

// -----

func.func @load_func() -> tensor<5xf32> {
  %w = train.load @load_func : tensor<5xf32>
  func.return %w : tensor<5xf32>
}

// CHECK: train.load: @load_func is a 'func.func', expected a 'train.param'

// -----

train.param @w trainable : tensor<4x3xf32> = dense<0.0> : tensor<4x3xf32>
func.func @sgd_shape(%g: tensor<3x4xf32>, %lr: f32) {
  train.sgd @w, %g, %lr : tensor<3x4xf32>
  func.return
}

// CHECK: train.sgd: gradient shape [3, 4] does not match @w ([4, 3])

// -----

train.param @w trainable : tensor<4x3xf32> = dense<0.0> : tensor<4x3xf32>
func.func @sgd_momentum_alone(%g: tensor<4x3xf32>, %lr: f32) {
  train.sgd @w, %g, %lr {momentum = 0.9 : f32} : tensor<4x3xf32>
  func.return
}

// CHECK: train.sgd: 'momentum' and 'velocity' go together

// -----

train.param @w trainable : tensor<4x3xf32> = dense<0.0> : tensor<4x3xf32>
train.param @v : tensor<4xf32> = dense<0.0> : tensor<4xf32>
func.func @sgd_velocity_type(%g: tensor<4x3xf32>, %lr: f32) {
  train.sgd @w, %g, %lr {momentum = 0.9 : f32, velocity = @v} : tensor<4x3xf32>
  func.return
}

// CHECK: train.sgd: velocity @v must have the type of @w, tensor<4x3xf32>

// -----

train.param @w trainable : tensor<4x3xf32> = dense<0.0> : tensor<4x3xf32>
func.func @sgd_channels(%g: tensor<2x3xf32>, %lr: f32) {
  train.sgd @w, %g, %lr {channels = array<i64: 3, 4>} : tensor<2x3xf32>
  func.return
}

// CHECK: train.sgd: channels [3, 4] must be increasing indices below 4

// -----

train.param @q trainable : tensor<4x!quant.uniform<i8:f32, 0.5:0>> = dense<0> : tensor<4xi8>
train.param @v : tensor<4x!quant.uniform<i8:f32, 0.5:0>> = dense<0> : tensor<4xi8>
func.func @sgd_quantized_momentum(%g: tensor<4xf32>, %lr: f32) {
  train.sgd @q, %g, %lr {momentum = 0.9 : f32, velocity = @v} : tensor<4xf32>
  func.return
}

// CHECK: train.sgd: velocity @v of the quantized @q must be a tensor of f32 of its shape [4], got tensor<4x!quant.uniform<i8:f32, 0.5:0>>

// -----

train.param @w trainable : tensor<4xf32> = dense<0.0> : tensor<4xf32>
func.func @sgd_rounding_float(%g: tensor<4xf32>, %lr: f32) {
  train.sgd @w, %g, %lr {rounding = "nearest"} : tensor<4xf32>
  func.return
}

// CHECK: train.sgd: rounding applies to quantized parameters only, @w is float

// -----

train.param @q trainable : tensor<4x!quant.uniform<i8:f32, 0.5:0>> = dense<0> : tensor<4xi8>
func.func @sgd_stochastic_without_rng(%g: tensor<4xf32>, %lr: f32) {
  train.sgd @q, %g, %lr {rounding = "stochastic"} : tensor<4xf32>
  func.return
}

// CHECK: train.sgd: stochastic rounding and its 'rng' state go together

// -----

train.param @w trainable : tensor<4xf32> = dense<0.0> : tensor<4xf32>
func.func @scale_grad_float(%g: tensor<4xf32>) -> tensor<4xf32> {
  %0 = train.scale_grad @w, %g {exponent = -2 : i64} : (tensor<4xf32>) -> tensor<4xf32>
  func.return %0 : tensor<4xf32>
}

// CHECK: train.scale_grad: @w must be a quantized param, got tensor<4xf32>

// -----

func.func @clamp_mask_producer(%x: tensor<1x4xf32>) -> tensor<1x4xi1> {
  %y = nn.relu %x : (tensor<1x4xf32>) -> tensor<1x4xf32>
  %m = train.clamp_mask %y from %x : (tensor<1x4xf32>, tensor<1x4xf32>) -> tensor<1x4xi1>
  func.return %m : tensor<1x4xi1>
}

// CHECK: train.clamp_mask: the masked value must be the result of one of quant.conv2d, quant.fully_connected, quant.add, quant.global_avg_pool, quant.quantize, quant.requantize

// -----

func.func @mask_grad_shape(%dy: tensor<1x4xf32>, %m: tensor<1x5xi1>) -> tensor<1x4xf32> {
  %0 = train.mask_grad %dy, %m : (tensor<1x4xf32>, tensor<1x5xi1>) -> tensor<1x4xf32>
  func.return %0 : tensor<1x4xf32>
}

// CHECK: train.mask_grad: the mask must be a tensor of i1 of dy's shape [1, 4], got tensor<1x5xi1>

// -----

func.func @fc_weight_grad(%dy: tensor<2x3xf32>, %x: tensor<2x5xf32>) -> tensor<3x4xf32> {
  %0 = train.fully_connected_weight_grad %dy, %x : (tensor<2x3xf32>, tensor<2x5xf32>) -> tensor<3x4xf32>
  func.return %0 : tensor<3x4xf32>
}

// CHECK: train.fully_connected_weight_grad: dy [2, 3] and an input [2, 5] give [3, 5], got [3, 4]

// -----

train.param @w trainable : tensor<4xf32> = dense<0.0> : tensor<4xf32>
train.param @m : tensor<4xf32> = dense<0.0> : tensor<4xf32>
train.param @v : tensor<4xf32> = dense<0.0> : tensor<4xf32>
train.param @step : tensor<f32> = dense<0.0> : tensor<f32>
func.func @adam_step(%g: tensor<4xf32>, %lr: f32) {
  train.adam @w, %g, %lr {beta1 = 0.9 : f32, beta2 = 0.999 : f32, eps = 1.0e-08 : f32, m = @m, v = @v, step = @step} : tensor<4xf32>
  func.return
}

// CHECK: train.adam: step counter @step must be a one-element integer tensor, got tensor<f32>

// -----

train.param @w trainable : tensor<4xf32> = dense<0.0> : tensor<4xf32>
train.param @m : tensor<4xf32> = dense<0.0> : tensor<4xf32>
train.param @v : tensor<4xf32> = dense<0.0> : tensor<4xf32>
train.param @step : tensor<i32> = dense<0> : tensor<i32>
func.func @adam_beta(%g: tensor<4xf32>, %lr: f32) {
  train.adam @w, %g, %lr {beta1 = 1.5 : f32, beta2 = 0.999 : f32, eps = 1.0e-08 : f32, m = @m, v = @v, step = @step} : tensor<4xf32>
  func.return
}

// CHECK: train.adam: beta1 must lie in [0, 1), got 1.5

// -----

func.func @ce_batch(%z: tensor<3x10xf32>, %l: i32) -> f32 {
  %0, %1 = train.softmax_cross_entropy %z, %l : (tensor<3x10xf32>, i32) -> (f32, tensor<3x10xf32>)
  func.return %0 : f32
}

// CHECK: train.softmax_cross_entropy: a scalar label needs logits of batch 1

// -----

func.func @ce_label_shape(%z: tensor<3x10xf32>, %l: tensor<2xi32>) -> f32 {
  %0, %1 = train.softmax_cross_entropy %z, %l : (tensor<3x10xf32>, tensor<2xi32>) -> (f32, tensor<3x10xf32>)
  func.return %0 : f32
}

// CHECK: train.softmax_cross_entropy: label must have shape [3], got [2]

// -----

func.func @mse_types(%p: tensor<1x10xf32>, %t: tensor<1x9xf32>) -> f32 {
  %0, %1 = train.mse %p, %t : (tensor<1x10xf32>, tensor<1x9xf32>) -> (f32, tensor<1x10xf32>)
  func.return %0 : f32
}

// CHECK: train.mse: prediction, target and gradient must have one type, got tensor<1x10xf32>, tensor<1x9xf32> and tensor<1x10xf32>

// -----

func.func @input_grad_shape(%dy: tensor<1x4x8x8xf32>, %w: tensor<4x2x3x3xf32>) -> tensor<1x2x8x8xf32> {
  %0 = train.conv2d_input_grad %dy, %w {strides = array<i64: 2, 2>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x4x8x8xf32>, tensor<4x2x3x3xf32>) -> tensor<1x2x8x8xf32>
  func.return %0 : tensor<1x2x8x8xf32>
}

// CHECK: train.conv2d_input_grad: a convolution of [1, 2, 8, 8] by [4, 2, 3, 3] gives [1, 4, 4, 4], but dy has shape [1, 4, 8, 8]

// -----

func.func @input_grad_groups(%dy: tensor<1x4x8x8xf32>, %w: tensor<4x2x3x3xf32>) -> tensor<1x2x8x8xf32> {
  %0 = train.conv2d_input_grad %dy, %w {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 2 : i64} : (tensor<1x4x8x8xf32>, tensor<4x2x3x3xf32>) -> tensor<1x2x8x8xf32>
  func.return %0 : tensor<1x2x8x8xf32>
}

// CHECK: train.conv2d_input_grad: 2 input channels, weight [4, 2, 3, 3] and groups=2 do not match

// -----

func.func @weight_grad_rows(%dy: tensor<1x4x8x8xf32>, %x: tensor<1x2x8x8xf32>) -> tensor<3x2x3x3xf32> {
  %0 = train.conv2d_weight_grad %dy, %x {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64, channels = array<i64: 0, 1>} : (tensor<1x4x8x8xf32>, tensor<1x2x8x8xf32>) -> tensor<3x2x3x3xf32>
  func.return %0 : tensor<3x2x3x3xf32>
}

// CHECK: train.conv2d_weight_grad: 2 selected channels, but the result has 3 rows

// -----

func.func @weight_grad_channels(%dy: tensor<1x4x8x8xf32>, %x: tensor<1x2x8x8xf32>) -> tensor<2x2x3x3xf32> {
  %0 = train.conv2d_weight_grad %dy, %x {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64, channels = array<i64: 2, 1>} : (tensor<1x4x8x8xf32>, tensor<1x2x8x8xf32>) -> tensor<2x2x3x3xf32>
  func.return %0 : tensor<2x2x3x3xf32>
}

// CHECK: train.conv2d_weight_grad: channels [2, 1] must be increasing output-channel indices below 4

// -----

func.func @weight_grad_kernel(%dy: tensor<1x4x8x8xf32>, %x: tensor<1x2x8x8xf32>) -> tensor<4x2x5x5xf32> {
  %0 = train.conv2d_weight_grad %dy, %x {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x4x8x8xf32>, tensor<1x2x8x8xf32>) -> tensor<4x2x5x5xf32>
  func.return %0 : tensor<4x2x5x5xf32>
}

// CHECK: train.conv2d_weight_grad: a convolution of [1, 2, 8, 8] by [4, 2, 5, 5] gives [1, 4, 6, 6], but dy has shape [1, 4, 8, 8]

// -----

func.func @bias_grad(%dy: tensor<1x4x8x8xf32>) -> tensor<8xf32> {
  %0 = train.bias_grad %dy : (tensor<1x4x8x8xf32>) -> tensor<8xf32>
  func.return %0 : tensor<8xf32>
}

// CHECK: train.bias_grad: dy of shape [1, 4, 8, 8] (rank >= 2) sums to [4], got [8]

// -----

func.func @relu_grad(%dy: tensor<1x4xf32>, %y: tensor<1x5xf32>) -> tensor<1x4xf32> {
  %0 = train.relu_grad %dy, %y : (tensor<1x4xf32>, tensor<1x5xf32>) -> tensor<1x4xf32>
  func.return %0 : tensor<1x4xf32>
}

// CHECK: train.relu_grad: dy, the saved value and the result must have one shape, got [1, 4], [1, 5] and [1, 4]

// -----

func.func @clip_grad(%dy: tensor<1x4xf32>, %y: tensor<1x4xf32>) -> tensor<1x4xf32> {
  %0 = train.clip_grad %dy, %y {min = 6.0 : f32, max = 0.0 : f32} : (tensor<1x4xf32>, tensor<1x4xf32>) -> tensor<1x4xf32>
  func.return %0 : tensor<1x4xf32>
}

// CHECK: train.clip_grad: min 6.0 is above max 0.0

// -----

func.func @gap_grad(%dy: tensor<1x4x1x1xf32>) -> tensor<1x5x6x6xf32> {
  %0 = train.global_avg_pool_grad %dy : (tensor<1x4x1x1xf32>) -> tensor<1x5x6x6xf32>
  func.return %0 : tensor<1x5x6x6xf32>
}

// CHECK: train.global_avg_pool_grad: dy [1, 4, 1, 1] must be the N x C x 1 x 1 pooling of the result [1, 5, 6, 6]

// -----

func.func @max_pool_grad(%dy: tensor<1x4x4x4xf32>, %x: tensor<1x4x6x6xf32>) -> tensor<1x4x6x6xf32> {
  %0 = train.max_pool_grad %dy, %x {kernel = array<i64: 3, 3>, strides = array<i64: 2, 2>, pads = array<i64: 1, 1, 1, 1>} : (tensor<1x4x4x4xf32>, tensor<1x4x6x6xf32>) -> tensor<1x4x6x6xf32>
  func.return %0 : tensor<1x4x6x6xf32>
}

// CHECK: train.max_pool_grad: pooling [1, 4, 6, 6] gives [1, 4, 3, 3], but dy has shape [1, 4, 4, 4]

// -----

func.func @reduce_to_shape(%g: tensor<2x3xf32>) -> tensor<2xf32> {
  %0 = train.reduce_to_shape %g : (tensor<2x3xf32>) -> tensor<2xf32>
  func.return %0 : tensor<2xf32>
}

// CHECK: train.reduce_to_shape: [2] does not broadcast to [2, 3]
