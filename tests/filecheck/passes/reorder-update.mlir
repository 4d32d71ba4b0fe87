// RUN: tinymlir-opt %s --split-input-file -p reorder-update | filecheck %s

// A weight and a bias whose updates wait at the end: each SGD is fused into the op
// computing its gradient, where that op stood.
train.param @w trainable : tensor<2x2x1x1xf32> = dense<0.5> : tensor<2x2x1x1xf32>
train.param @b trainable : tensor<2xf32> = dense<0.0> : tensor<2xf32>
func.func @train_step(%x: tensor<1x2x3x3xf32>, %dy: tensor<1x2x3x3xf32>, %lr: f32) -> tensor<1x2x3x3xf32> {
  %w = train.load @w : tensor<2x2x1x1xf32>
  %dx = train.conv2d_input_grad %dy, %w {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x2x3x3xf32>, tensor<2x2x1x1xf32>) -> tensor<1x2x3x3xf32>
  %g = train.conv2d_weight_grad %dy, %x {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64, channels = array<i64: 1>} : (tensor<1x2x3x3xf32>, tensor<1x2x3x3xf32>) -> tensor<1x2x1x1xf32>
  %gb = train.bias_grad %dy : (tensor<1x2x3x3xf32>) -> tensor<2xf32>
  %s = nn.add %dx, %dx : (tensor<1x2x3x3xf32>, tensor<1x2x3x3xf32>) -> tensor<1x2x3x3xf32>
  train.sgd @w, %g, %lr {channels = array<i64: 1>} : tensor<1x2x1x1xf32>
  train.sgd @b, %gb, %lr : tensor<2xf32>
  func.return %s : tensor<1x2x3x3xf32>
}

// CHECK-LABEL: func.func @train_step(
// CHECK-SAME:      %[[X:.*]]: tensor<1x2x3x3xf32>, %[[DY:.*]]: tensor<1x2x3x3xf32>, %[[LR:.*]]: f32)
// CHECK-NEXT:    %[[W:.*]] = train.load @w
// CHECK-NEXT:    %[[DX:.*]] = train.conv2d_input_grad %[[DY]], %[[W]]
// CHECK-NEXT:    train.conv2d_weight_grad_sgd @w, %[[DY]], %[[X]], %[[LR]] {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64, channels = array<i64: 1>} : tensor<1x2x3x3xf32>, tensor<1x2x3x3xf32>
// CHECK-NEXT:    train.bias_grad_sgd @b, %[[DY]], %[[LR]] : tensor<1x2x3x3xf32>
// CHECK-NEXT:    %[[S:.*]] = nn.add %[[DX]], %[[DX]]
// CHECK-NEXT:    func.return %[[S]]

// -----

// The input gradient reads %w after the weight gradient: updating @w in place there would
// change what it reads, so @w's update stays where it is. @b's is fused.
train.param @w trainable : tensor<2x2x1x1xf32> = dense<0.5> : tensor<2x2x1x1xf32>
train.param @b trainable : tensor<2xf32> = dense<0.0> : tensor<2xf32>
func.func @train_step(%x: tensor<1x2x3x3xf32>, %dy: tensor<1x2x3x3xf32>, %lr: f32) -> tensor<1x2x3x3xf32> {
  %w = train.load @w : tensor<2x2x1x1xf32>
  %g = train.conv2d_weight_grad %dy, %x {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x2x3x3xf32>, tensor<1x2x3x3xf32>) -> tensor<2x2x1x1xf32>
  %gb = train.bias_grad %dy : (tensor<1x2x3x3xf32>) -> tensor<2xf32>
  %dx = train.conv2d_input_grad %dy, %w {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x2x3x3xf32>, tensor<2x2x1x1xf32>) -> tensor<1x2x3x3xf32>
  train.sgd @w, %g, %lr : tensor<2x2x1x1xf32>
  train.sgd @b, %gb, %lr : tensor<2xf32>
  func.return %dx : tensor<1x2x3x3xf32>
}

// CHECK-LABEL: func.func @train_step(
// CHECK-NEXT:    %[[W:.*]] = train.load @w
// CHECK-NEXT:    %[[G:.*]] = train.conv2d_weight_grad
// CHECK-NEXT:    train.bias_grad_sgd @b
// CHECK-NEXT:    %[[DX:.*]] = train.conv2d_input_grad %{{.*}}, %[[W]]
// CHECK-NEXT:    train.sgd @w, %[[G]]
// CHECK-NEXT:    func.return %[[DX]]

// -----

// SGD with momentum fuses with its velocity; Adam moves right after its gradient, unfused.
train.param @w trainable : tensor<2x2x1x1xf32> = dense<0.5> : tensor<2x2x1x1xf32>
train.param @w.momentum : tensor<2x2x1x1xf32> = dense<0.0> : tensor<2x2x1x1xf32>
train.param @b trainable : tensor<2xf32> = dense<0.0> : tensor<2xf32>
train.param @b.m : tensor<2xf32> = dense<0.0> : tensor<2xf32>
train.param @b.v : tensor<2xf32> = dense<0.0> : tensor<2xf32>
train.param @adam.step : tensor<i32> = dense<0> : tensor<i32>
func.func @train_step(%x: tensor<1x2x3x3xf32>, %dy: tensor<1x2x3x3xf32>, %lr: f32) -> tensor<1x2x3x3xf32> {
  train.increment @adam.step
  %g = train.conv2d_weight_grad %dy, %x {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x2x3x3xf32>, tensor<1x2x3x3xf32>) -> tensor<2x2x1x1xf32>
  %gb = train.bias_grad %dy : (tensor<1x2x3x3xf32>) -> tensor<2xf32>
  %s = nn.add %dy, %dy : (tensor<1x2x3x3xf32>, tensor<1x2x3x3xf32>) -> tensor<1x2x3x3xf32>
  train.sgd @w, %g, %lr {momentum = 0.9 : f32, velocity = @w.momentum} : tensor<2x2x1x1xf32>
  train.adam @b, %gb, %lr {m = @b.m, v = @b.v, step = @adam.step, beta1 = 0.9 : f32, beta2 = 0.999 : f32, eps = 1.0e-08 : f32} : tensor<2xf32>
  func.return %s : tensor<1x2x3x3xf32>
}

// CHECK-LABEL: func.func @train_step(
// CHECK-NEXT:    train.increment @adam.step
// CHECK-NEXT:    train.conv2d_weight_grad_sgd @w, %{{.*}}, %{{.*}}, %{{.*}} {{{.*}}groups = 1 : i64, momentum = 9.000000e-01 : f32, velocity = @w.momentum}
// CHECK-NEXT:    %[[GB:.*]] = train.bias_grad
// CHECK-NEXT:    train.adam @b, %[[GB]]
// CHECK-NEXT:    nn.add
// CHECK-NEXT:    func.return

// -----

// A classifier (nn.gemm): its [1, 5] -> [5] bias reduction fuses like a bias gradient; its
// weight gradient is an nn.gemm, so the update just moves right after it.
train.param @fw trainable : tensor<5x8xf32> = dense<0.3> : tensor<5x8xf32>
train.param @fb trainable : tensor<5xf32> = dense<0.0> : tensor<5xf32>
func.func @train_step(%f: tensor<1x8xf32>, %dy: tensor<1x5xf32>, %lr: f32) -> tensor<1x8xf32> {
  %fw = train.load @fw : tensor<5x8xf32>
  %df = nn.gemm %dy, %fw {alpha = 1.0 : f32, beta = 1.0 : f32, trans_a = false, trans_b = false} : (tensor<1x5xf32>, tensor<5x8xf32>) -> tensor<1x8xf32>
  %dfw = nn.gemm %dy, %f {alpha = 1.0 : f32, beta = 1.0 : f32, trans_a = true, trans_b = false} : (tensor<1x5xf32>, tensor<1x8xf32>) -> tensor<5x8xf32>
  %dfb = train.reduce_to_shape %dy : (tensor<1x5xf32>) -> tensor<5xf32>
  %r = nn.relu %df : (tensor<1x8xf32>) -> tensor<1x8xf32>
  train.sgd @fb, %dfb, %lr : tensor<5xf32>
  train.sgd @fw, %dfw, %lr : tensor<5x8xf32>
  func.return %r : tensor<1x8xf32>
}

// CHECK-LABEL: func.func @train_step(
// CHECK-SAME:      %[[F:.*]]: tensor<1x8xf32>, %[[DY:.*]]: tensor<1x5xf32>, %[[LR:.*]]: f32)
// CHECK:         %[[DFW:.*]] = nn.gemm %[[DY]], %[[F]] {
// CHECK-NEXT:    train.sgd @fw, %[[DFW]], %[[LR]]
// CHECK-NEXT:    train.bias_grad_sgd @fb, %[[DY]], %[[LR]] : tensor<1x5xf32>
// CHECK-NEXT:    nn.relu

// -----

// The int8 path: a quantized weight, its gradient scaled to the integers' (exponent 1) and
// by QAS (exponent -2) before a rounding SGD: all one op, the exponents as `scales`.
train.param @q trainable : tensor<2x2x1x1x!quant.uniform<i8:f32:0, {0.1:0, 0.2:0}>> = dense<[[[[10]], [[-20]]], [[[30]], [[40]]]]> : tensor<2x2x1x1xi8>
func.func @train_step(%x: tensor<1x2x3x3x!quant.uniform<i8:f32, 0.05:-3>>, %dy: tensor<1x2x3x3xf32>, %lr: f32) {
  %g = train.conv2d_weight_grad %dy, %x {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x2x3x3xf32>, tensor<1x2x3x3x!quant.uniform<i8:f32, 0.05:-3>>) -> tensor<2x2x1x1xf32>
  %gq = train.scale_grad @q, %g {exponent = 1 : i64} : (tensor<2x2x1x1xf32>) -> tensor<2x2x1x1xf32>
  %gs = train.scale_grad @q, %gq {exponent = -2 : i64} : (tensor<2x2x1x1xf32>) -> tensor<2x2x1x1xf32>
  train.sgd @q, %gs, %lr {rounding = "nearest"} : tensor<2x2x1x1xf32>
  func.return
}

// CHECK-LABEL: func.func @train_step(
// CHECK-NEXT:    train.conv2d_weight_grad_sgd @q, %{{.*}}, %{{.*}}, %{{.*}} {{{.*}}rounding = "nearest", scales = array<i64: 1, -2>} : tensor<1x2x3x3xf32>, tensor<1x2x3x3x!quant.uniform<i8:f32, 0.05:-3>>
// CHECK-NEXT:    func.return
