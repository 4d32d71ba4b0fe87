// Every train op parses and prints back, in the custom and in the generic form.
// RUN: tinymlir-opt %s | tinymlir-opt | filecheck %s
// RUN: tinymlir-opt %s --print-op-generic | tinymlir-opt | filecheck %s

// CHECK:      train.param @w trainable : tensor<4x2x3x3xf32> = dense<5.000000e-01> : tensor<4x2x3x3xf32>
// CHECK-NEXT: train.param @w.momentum : tensor<4x2x3x3xf32> = dense<0.000000e+00> : tensor<4x2x3x3xf32>
// CHECK-NEXT: train.param @w.m : tensor<4x2x3x3xf32> = dense<0.000000e+00> : tensor<4x2x3x3xf32>
// CHECK-NEXT: train.param @w.v : tensor<4x2x3x3xf32> = dense<0.000000e+00> : tensor<4x2x3x3xf32>
// CHECK-NEXT: train.param @adam.step : tensor<i32> = dense<0> : tensor<i32>
// CHECK-NEXT: train.param @q trainable : tensor<4x!quant.uniform<i8:f32:0, {0.5:0, 0.25:0, 0.5:0, 1.0:0}>> = dense<[1, -2, 3, 127]> : tensor<4xi8>
train.param @w trainable : tensor<4x2x3x3xf32> = dense<0.5> : tensor<4x2x3x3xf32>
train.param @w.momentum : tensor<4x2x3x3xf32> = dense<0.0> : tensor<4x2x3x3xf32>
train.param @w.m : tensor<4x2x3x3xf32> = dense<0.0> : tensor<4x2x3x3xf32>
train.param @w.v : tensor<4x2x3x3xf32> = dense<0.0> : tensor<4x2x3x3xf32>
train.param @adam.step : tensor<i32> = dense<0> : tensor<i32>
train.param @q trainable : tensor<4x!quant.uniform<i8:f32:0, {0.5:0, 0.25:0, 0.5:0, 1.0:0}>> = dense<[1, -2, 3, 127]> : tensor<4xi8>

func.func @state(%g: tensor<4x2x3x3xf32>, %gc: tensor<2x2x3x3xf32>, %lr: f32) -> tensor<4x!quant.uniform<i8:f32:0, {0.5:0, 0.25:0, 0.5:0, 1.0:0}>> {
  %w = train.load @w : tensor<4x2x3x3xf32>
  %q = train.load @q : tensor<4x!quant.uniform<i8:f32:0, {0.5:0, 0.25:0, 0.5:0, 1.0:0}>>
  train.increment @adam.step
  train.sgd @w, %g, %lr : tensor<4x2x3x3xf32>
  train.sgd @w, %g, %lr {momentum = 0.9 : f32, velocity = @w.momentum} : tensor<4x2x3x3xf32>
  train.sgd @w, %gc, %lr {channels = array<i64: 0, 3>} : tensor<2x2x3x3xf32>
  train.adam @w, %g, %lr {beta1 = 0.9 : f32, beta2 = 0.999 : f32, eps = 1.0e-08 : f32, m = @w.m, v = @w.v, step = @adam.step} : tensor<4x2x3x3xf32>
  func.return %q : tensor<4x!quant.uniform<i8:f32:0, {0.5:0, 0.25:0, 0.5:0, 1.0:0}>>
}

// CHECK-LABEL: func.func @state(
// CHECK-SAME:      %[[G:.*]]: tensor<4x2x3x3xf32>, %[[GC:.*]]: tensor<2x2x3x3xf32>, %[[LR:.*]]: f32)
// CHECK:         train.load @w : tensor<4x2x3x3xf32>
// CHECK:         train.load @q : tensor<4x!quant.uniform<i8:f32:0, {0.5:0, 0.25:0, 0.5:0, 1.0:0}>>
// CHECK:         train.increment @adam.step
// CHECK:         train.sgd @w, %[[G]], %[[LR]] : tensor<4x2x3x3xf32>
// CHECK:         train.sgd @w, %[[G]], %[[LR]] {momentum = 9.000000e-01 : f32, velocity = @w.momentum} : tensor<4x2x3x3xf32>
// CHECK:         train.sgd @w, %[[GC]], %[[LR]] {channels = array<i64: 0, 3>} : tensor<2x2x3x3xf32>
// CHECK:         train.adam @w, %[[G]], %[[LR]] {{{.*}}m = @w.m, v = @w.v, step = @adam.step{{.*}}} : tensor<4x2x3x3xf32>

func.func @losses(%z: tensor<1x10xf32>, %l: i32, %zb: tensor<3x10xf32>, %lb: tensor<3xi32>) -> (f32, f32, f32) {
  %0, %1 = train.softmax_cross_entropy %z, %l : (tensor<1x10xf32>, i32) -> (f32, tensor<1x10xf32>)
  %2, %3 = train.softmax_cross_entropy %zb, %lb : (tensor<3x10xf32>, tensor<3xi32>) -> (f32, tensor<3x10xf32>)
  %4, %5 = train.mse %zb, %zb : (tensor<3x10xf32>, tensor<3x10xf32>) -> (f32, tensor<3x10xf32>)
  func.return %0, %2, %4 : f32, f32, f32
}

// CHECK-LABEL: func.func @losses(
// CHECK:         %{{.*}}, %{{.*}} = train.softmax_cross_entropy %{{.*}}, %{{.*}} : (tensor<1x10xf32>, i32) -> (f32, tensor<1x10xf32>)
// CHECK:         %{{.*}}, %{{.*}} = train.softmax_cross_entropy %{{.*}}, %{{.*}} : (tensor<3x10xf32>, tensor<3xi32>) -> (f32, tensor<3x10xf32>)
// CHECK:         %{{.*}}, %{{.*}} = train.mse %{{.*}}, %{{.*}} : (tensor<3x10xf32>, tensor<3x10xf32>) -> (f32, tensor<3x10xf32>)

func.func @conv_grads(%dy: tensor<1x4x4x4xf32>, %x: tensor<1x2x8x8xf32>, %w: tensor<4x2x3x3xf32>, %qx: tensor<1x2x8x8x!quant.uniform<i8:f32, 0.1:-128>>) -> (tensor<1x2x8x8xf32>, tensor<4x2x3x3xf32>, tensor<2x2x3x3xf32>, tensor<4xf32>) {
  %dx = train.conv2d_input_grad %dy, %w {strides = array<i64: 2, 2>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x4x4x4xf32>, tensor<4x2x3x3xf32>) -> tensor<1x2x8x8xf32>
  %dw = train.conv2d_weight_grad %dy, %x {strides = array<i64: 2, 2>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x4x4x4xf32>, tensor<1x2x8x8xf32>) -> tensor<4x2x3x3xf32>
  %dwc = train.conv2d_weight_grad %dy, %qx {strides = array<i64: 2, 2>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64, channels = array<i64: 1, 2>} : (tensor<1x4x4x4xf32>, tensor<1x2x8x8x!quant.uniform<i8:f32, 0.1:-128>>) -> tensor<2x2x3x3xf32>
  %db = train.bias_grad %dy : (tensor<1x4x4x4xf32>) -> tensor<4xf32>
  func.return %dx, %dw, %dwc, %db : tensor<1x2x8x8xf32>, tensor<4x2x3x3xf32>, tensor<2x2x3x3xf32>, tensor<4xf32>
}

// CHECK-LABEL: func.func @conv_grads(
// CHECK:         train.conv2d_input_grad %{{.*}}, %{{.*}} {strides = array<i64: 2, 2>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x4x4x4xf32>, tensor<4x2x3x3xf32>) -> tensor<1x2x8x8xf32>
// CHECK:         train.conv2d_weight_grad %{{.*}}, %{{.*}} {strides = array<i64: 2, 2>, {{.*}}} : (tensor<1x4x4x4xf32>, tensor<1x2x8x8xf32>) -> tensor<4x2x3x3xf32>
// CHECK:         train.conv2d_weight_grad %{{.*}}, %{{.*}} {{{.*}}channels = array<i64: 1, 2>{{.*}}} : (tensor<1x4x4x4xf32>, tensor<1x2x8x8x!quant.uniform<i8:f32, 0.1:-128>>) -> tensor<2x2x3x3xf32>
// CHECK:         train.bias_grad %{{.*}} : (tensor<1x4x4x4xf32>) -> tensor<4xf32>

func.func @elementwise_grads(%dy: tensor<1x4x6x6xf32>, %y: tensor<1x4x6x6xf32>, %dp: tensor<1x4x3x3xf32>, %dg: tensor<1x4x1x1xf32>) -> (tensor<1x4x6x6xf32>, tensor<1x4x6x6xf32>, tensor<1x4x6x6xf32>, tensor<1x4x6x6xf32>, tensor<1x4x6x6xf32>, tensor<4x1x1xf32>) {
  %0 = train.relu_grad %dy, %y : (tensor<1x4x6x6xf32>, tensor<1x4x6x6xf32>) -> tensor<1x4x6x6xf32>
  %1 = train.clip_grad %dy, %y {min = 0.0 : f32, max = 6.0 : f32} : (tensor<1x4x6x6xf32>, tensor<1x4x6x6xf32>) -> tensor<1x4x6x6xf32>
  %2 = train.global_avg_pool_grad %dg : (tensor<1x4x1x1xf32>) -> tensor<1x4x6x6xf32>
  %3 = train.avg_pool_grad %dp {kernel = array<i64: 2, 2>, strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 0, 0>, count_include_pad = false} : (tensor<1x4x3x3xf32>) -> tensor<1x4x6x6xf32>
  %4 = train.max_pool_grad %dp, %y {kernel = array<i64: 3, 3>, strides = array<i64: 2, 2>, pads = array<i64: 1, 1, 1, 1>} : (tensor<1x4x3x3xf32>, tensor<1x4x6x6xf32>) -> tensor<1x4x6x6xf32>
  %5 = train.reduce_to_shape %dy : (tensor<1x4x6x6xf32>) -> tensor<4x1x1xf32>
  func.return %0, %1, %2, %3, %4, %5 : tensor<1x4x6x6xf32>, tensor<1x4x6x6xf32>, tensor<1x4x6x6xf32>, tensor<1x4x6x6xf32>, tensor<1x4x6x6xf32>, tensor<4x1x1xf32>
}

// CHECK-LABEL: func.func @elementwise_grads(
// CHECK:         train.relu_grad %{{.*}}, %{{.*}} : (tensor<1x4x6x6xf32>, tensor<1x4x6x6xf32>) -> tensor<1x4x6x6xf32>
// CHECK:         train.clip_grad %{{.*}}, %{{.*}} {min = 0.000000e+00 : f32, max = 6.000000e+00 : f32} : (tensor<1x4x6x6xf32>, tensor<1x4x6x6xf32>) -> tensor<1x4x6x6xf32>
// CHECK:         train.global_avg_pool_grad %{{.*}} : (tensor<1x4x1x1xf32>) -> tensor<1x4x6x6xf32>
// CHECK:         train.avg_pool_grad %{{.*}} {kernel = array<i64: 2, 2>, strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 0, 0>, count_include_pad = false} : (tensor<1x4x3x3xf32>) -> tensor<1x4x6x6xf32>
// CHECK:         train.max_pool_grad %{{.*}}, %{{.*}} {kernel = array<i64: 3, 3>, strides = array<i64: 2, 2>, pads = array<i64: 1, 1, 1, 1>} : (tensor<1x4x3x3xf32>, tensor<1x4x6x6xf32>) -> tensor<1x4x6x6xf32>
// CHECK:         train.reduce_to_shape %{{.*}} : (tensor<1x4x6x6xf32>) -> tensor<4x1x1xf32>
