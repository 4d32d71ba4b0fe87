// RUN: tinymlir-opt %s --split-input-file -p autodiff | filecheck %s
// RUN: tinymlir-opt %s --split-input-file -p 'autodiff{optimizer=sgdm momentum=0.5}' | filecheck %s --check-prefix=SGDM
// RUN: tinymlir-opt %s --split-input-file -p 'autodiff{optimizer=adam}' | filecheck %s --check-prefix=ADAM
// RUN: tinymlir-opt %s --split-input-file -p 'autodiff{trainable=none num-classes=3 loss=mse}' | filecheck %s --check-prefix=HEAD
// RUN: not tinymlir-opt %s --split-input-file -p 'autodiff{optimizer=rmsprop}' 2>&1 | filecheck %s --check-prefix=ERR

// conv (stride 2) + relu6, depthwise conv, residual add, GAP, flatten, classifier.
func.func @forward(%x: tensor<1x3x8x8xf32>) -> tensor<1x5xf32> {
  %w0 = arith.constant dense<0.1> : tensor<4x3x3x3xf32>
  %b0 = arith.constant dense<0.0> : tensor<4xf32>
  %c0 = nn.conv2d %x, %w0, %b0 {strides = array<i64: 2, 2>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32>, tensor<4xf32>) -> tensor<1x4x4x4xf32>
  %r0 = nn.clip %c0 {min = 0.0 : f32, max = 6.0 : f32} : (tensor<1x4x4x4xf32>) -> tensor<1x4x4x4xf32>
  %w1 = arith.constant dense<0.2> : tensor<4x1x3x3xf32>
  %c1 = nn.conv2d %r0, %w1 {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 4 : i64} : (tensor<1x4x4x4xf32>, tensor<4x1x3x3xf32>) -> tensor<1x4x4x4xf32>
  %s = nn.add %c1, %r0 : (tensor<1x4x4x4xf32>, tensor<1x4x4x4xf32>) -> tensor<1x4x4x4xf32>
  %g = nn.global_avg_pool %s : (tensor<1x4x4x4xf32>) -> tensor<1x4x1x1xf32>
  %f = nn.flatten %g {axis = 1 : i64} : (tensor<1x4x1x1xf32>) -> tensor<1x4xf32>
  %fw = arith.constant dense<0.3> : tensor<5x4xf32>
  %fb = arith.constant dense<0.0> : tensor<5xf32>
  %y = nn.gemm %f, %fw, %fb {alpha = 1.0 : f32, beta = 1.0 : f32, trans_a = false, trans_b = true} : (tensor<1x4xf32>, tensor<5x4xf32>, tensor<5xf32>) -> tensor<1x5xf32>
  func.return %y : tensor<1x5xf32>
}

// Weights and biases become params, numbered by layer; @forward loads them.
// CHECK:       train.param @layer0.weight trainable : tensor<4x3x3x3xf32> = dense<1.000000e-01> : tensor<4x3x3x3xf32>
// CHECK-NEXT:  train.param @layer0.bias trainable : tensor<4xf32>
// CHECK-NEXT:  train.param @layer1.weight trainable : tensor<4x1x3x3xf32>
// CHECK-NEXT:  train.param @layer2.weight trainable : tensor<5x4xf32>
// CHECK-NEXT:  train.param @layer2.bias trainable : tensor<5xf32>
// CHECK-LABEL: func.func @forward(
// CHECK-NOT:     arith.constant
// CHECK:         train.load @layer0.weight : tensor<4x3x3x3xf32>
// CHECK:         func.return %{{.*}} : tensor<1x5xf32>

// CHECK-LABEL: func.func @train_step(
// CHECK-SAME:      %[[X:.*]]: tensor<1x3x8x8xf32>, %[[LABEL:.*]]: i32, %[[LR:.*]]: f32) -> f32
// CHECK:         %[[W0:.*]] = train.load @layer0.weight
// CHECK:         %[[R0:.*]] = nn.clip
// CHECK:         %[[W1:.*]] = train.load @layer1.weight
// CHECK:         %[[F:.*]] = nn.flatten
// CHECK:         %[[FW:.*]] = train.load @layer2.weight
// CHECK:         %[[Y:.*]] = nn.gemm %[[F]], %[[FW]]
// CHECK-NEXT:    %[[LOSS:.*]], %[[DY:.*]] = train.softmax_cross_entropy %[[Y]], %[[LABEL]] : (tensor<1x5xf32>, i32) -> (f32, tensor<1x5xf32>)
// The classifier's gradients are nn.gemm with transposition flags, its bias a reduction.
// CHECK-NEXT:    %[[DF:.*]] = nn.gemm %[[DY]], %[[FW]] {{{.*}}trans_a = false, trans_b = false} : (tensor<1x5xf32>, tensor<5x4xf32>) -> tensor<1x4xf32>
// CHECK-NEXT:    %[[DFW:.*]] = nn.gemm %[[DY]], %[[F]] {{{.*}}trans_a = true, trans_b = false} : (tensor<1x5xf32>, tensor<1x4xf32>) -> tensor<5x4xf32>
// CHECK-NEXT:    %[[DFB:.*]] = train.reduce_to_shape %[[DY]] : (tensor<1x5xf32>) -> tensor<5xf32>
// CHECK-NEXT:    %[[DG:.*]] = nn.reshape %[[DF]] : (tensor<1x4xf32>) -> tensor<1x4x1x1xf32>
// CHECK-NEXT:    %[[DS:.*]] = train.global_avg_pool_grad %[[DG]] : (tensor<1x4x1x1xf32>) -> tensor<1x4x4x4xf32>
// CHECK-NEXT:    %[[DR1:.*]] = train.conv2d_input_grad %[[DS]], %[[W1]] {{{.*}}groups = 4 : i64}
// The residual: both paths' gradients are summed.
// CHECK-NEXT:    %[[DR0:.*]] = nn.add %[[DS]], %[[DR1]]
// CHECK-NEXT:    %[[DW1:.*]] = train.conv2d_weight_grad %[[DS]], %[[R0]] {{{.*}}groups = 4 : i64} : (tensor<1x4x4x4xf32>, tensor<1x4x4x4xf32>) -> tensor<4x1x3x3xf32>
// The relu6 mask reads the clip's output, the value the next layer saved anyway.
// CHECK-NEXT:    %[[DC0:.*]] = train.clip_grad %[[DR0]], %[[R0]] {min = 0.000000e+00 : f32, max = 6.000000e+00 : f32}
// The first layer's input needs no gradient: no conv2d_input_grad of it.
// CHECK-NEXT:    %[[DW0:.*]] = train.conv2d_weight_grad %[[DC0]], %[[X]] {strides = array<i64: 2, 2>, {{.*}}} : (tensor<1x4x4x4xf32>, tensor<1x3x8x8xf32>) -> tensor<4x3x3x3xf32>
// CHECK-NEXT:    %[[DB0:.*]] = train.bias_grad %[[DC0]] : (tensor<1x4x4x4xf32>) -> tensor<4xf32>
// CHECK-NEXT:    train.sgd @layer2.bias, %[[DFB]], %[[LR]] : tensor<5xf32>
// CHECK-NEXT:    train.sgd @layer2.weight, %[[DFW]], %[[LR]] : tensor<5x4xf32>
// CHECK-NEXT:    train.sgd @layer1.weight, %[[DW1]], %[[LR]] : tensor<4x1x3x3xf32>
// CHECK-NEXT:    train.sgd @layer0.bias, %[[DB0]], %[[LR]] : tensor<4xf32>
// CHECK-NEXT:    train.sgd @layer0.weight, %[[DW0]], %[[LR]] : tensor<4x3x3x3xf32>
// CHECK-NEXT:    func.return %[[LOSS]] : f32

// Momentum buffers are zero params right after their parameter.
// SGDM:       train.param @layer0.weight trainable : tensor<4x3x3x3xf32>
// SGDM-NEXT:  train.param @layer0.weight.momentum : tensor<4x3x3x3xf32> = dense<0.000000e+00> : tensor<4x3x3x3xf32>
// SGDM-LABEL: func.func @train_step(
// SGDM:       train.sgd @layer2.bias, %{{.*}}, %{{.*}} {momentum = 5.000000e-01 : f32, velocity = @layer2.bias.momentum} : tensor<5xf32>

// ADAM:       train.param @layer0.weight trainable : tensor<4x3x3x3xf32>
// ADAM-NEXT:  train.param @layer0.weight.m : tensor<4x3x3x3xf32> = dense<0.000000e+00>
// ADAM-NEXT:  train.param @layer0.weight.v : tensor<4x3x3x3xf32> = dense<0.000000e+00>
// ADAM:       train.param @adam.step : tensor<i32> = dense<0> : tensor<i32>
// ADAM-LABEL: func.func @train_step(
// ADAM-NEXT:  train.increment @adam.step
// ADAM:       train.adam @layer0.weight, %{{.*}}, %{{.*}} {m = @layer0.weight.m, v = @layer0.weight.v, step = @adam.step, beta1 = 9.000000e-01 : f32, beta2 = 9.990000e-01 : f32, eps = 1.000000e-08 : f32} : tensor<4x3x3x3xf32>

// A new 3-class classifier, the only trainable layer: backward stops at it.
// HEAD:       train.param @layer0.weight : tensor<4x3x3x3xf32>
// HEAD:       train.param @layer2.weight trainable : tensor<3x4xf32> = dense<{{\[}}[0.136961684, -0.230213284
// HEAD-NEXT:  train.param @layer2.bias trainable : tensor<3xf32> = dense<0.000000e+00> : tensor<3xf32>
// HEAD-LABEL: func.func @forward(
// HEAD-SAME:      -> tensor<1x3xf32>
// HEAD-LABEL: func.func @train_step(
// HEAD-SAME:      %{{.*}}: tensor<1x3x8x8xf32>, %[[T:.*]]: tensor<1x3xf32>, %{{.*}}: f32) -> f32
// HEAD:         %{{.*}}, %[[DY:.*]] = train.mse %{{.*}}, %[[T]] : (tensor<1x3xf32>, tensor<1x3xf32>) -> (f32, tensor<1x3xf32>)
// HEAD-NEXT:    nn.gemm %[[DY]], %{{.*}} {{{.*}}trans_a = true, trans_b = false} : (tensor<1x3xf32>, tensor<1x4xf32>) -> tensor<3x4xf32>
// HEAD-NEXT:    train.reduce_to_shape %[[DY]]
// HEAD-NEXT:    train.sgd @layer2.bias
// HEAD-NEXT:    train.sgd @layer2.weight
// HEAD-NEXT:    func.return

// ERR: in pass 'autodiff': optimizer=rmsprop is not one of sgd, sgdm, adam

// -----

// A broadcasting add of a trainable train.param (already in the module) and a max pool.
train.param @shift trainable : tensor<1x2x1x1xf32> = dense<0.5> : tensor<1x2x1x1xf32>
func.func @forward(%x: tensor<1x2x4x4xf32>) -> tensor<1x3xf32> {
  %s = train.load @shift : tensor<1x2x1x1xf32>
  %a = nn.add %x, %s : (tensor<1x2x4x4xf32>, tensor<1x2x1x1xf32>) -> tensor<1x2x4x4xf32>
  %m = nn.max_pool %a {kernel = array<i64: 2, 2>, strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 0, 0>} : (tensor<1x2x4x4xf32>) -> tensor<1x2x2x2xf32>
  %g = nn.global_avg_pool %m : (tensor<1x2x2x2xf32>) -> tensor<1x2x1x1xf32>
  %f = nn.reshape %g : (tensor<1x2x1x1xf32>) -> tensor<1x2xf32>
  %w = arith.constant dense<1.0> : tensor<2x3xf32>
  %y = nn.gemm %f, %w {alpha = 1.0 : f32, beta = 1.0 : f32, trans_a = false, trans_b = false} : (tensor<1x2xf32>, tensor<2x3xf32>) -> tensor<1x3xf32>
  func.return %y : tensor<1x3xf32>
}

// CHECK-LABEL: func.func @train_step(
// CHECK:         %[[A:.*]] = nn.add %{{.*}}, %{{.*}} : (tensor<1x2x4x4xf32>, tensor<1x2x1x1xf32>) -> tensor<1x2x4x4xf32>
// CHECK:         %[[DG:.*]] = train.global_avg_pool_grad
// CHECK-NEXT:    %[[DA:.*]] = train.max_pool_grad %[[DG]], %[[A]] {kernel = array<i64: 2, 2>, strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 0, 0>} : (tensor<1x2x2x2xf32>, tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
// CHECK-NEXT:    %[[DS:.*]] = train.reduce_to_shape %[[DA]] : (tensor<1x2x4x4xf32>) -> tensor<1x2x1x1xf32>
// CHECK-NEXT:    train.sgd @layer0.weight
// CHECK-NEXT:    train.sgd @shift, %[[DS]], %{{.*}} : tensor<1x2x1x1xf32>

// With trainable=none the existing trainable param keeps its flag; the new classifier
// (no bias before) gets one.
// HEAD:       train.param @shift trainable
// HEAD-NEXT:  train.param @layer0.weight trainable : tensor<2x3xf32>
// HEAD-NEXT:  train.param @layer0.bias trainable : tensor<3xf32>
// HEAD-LABEL: func.func @train_step(
// HEAD:         train.max_pool_grad
// HEAD:         train.sgd @shift
