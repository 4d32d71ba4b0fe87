// RUN: tinymlir-opt %s --split-input-file -p prune-backward | filecheck %s
// RUN: tinymlir-opt %s --split-input-file -p 'prune-backward{stats=true}' -o /dev/null 2>&1 | filecheck %s --check-prefix=STATS
// RUN: echo 'func.func @forward() { func.return }' | not tinymlir-opt -p prune-backward 2>&1 | filecheck %s --check-prefix=NOSTEP

// The output of `autodiff,sparse-update{bias-last=1 weights="2:0.5"}` on a net of layers
// 0 conv, 1 depthwise conv, 2 pointwise conv, 3 classifier: only layer 2 (its bias, half
// its weight channels) and the classifier train.
builtin.module {
  train.param @layer0.weight : tensor<4x3x3x3xf32> = dense<1.000000e-01> : tensor<4x3x3x3xf32>
  train.param @layer0.bias : tensor<4xf32> = dense<0.000000e+00> : tensor<4xf32>
  train.param @layer1.weight : tensor<4x1x3x3xf32> = dense<2.000000e-01> : tensor<4x1x3x3xf32>
  train.param @layer1.bias : tensor<4xf32> = dense<0.000000e+00> : tensor<4xf32>
  train.param @layer2.weight trainable : tensor<8x4x1x1xf32> = dense<[[[[2.500000e-01]], [[2.500000e-01]], [[2.500000e-01]], [[2.500000e-01]]], [[[1.000000e+00]], [[1.000000e+00]], [[1.000000e+00]], [[1.000000e+00]]], [[[5.000000e-02]], [[5.000000e-02]], [[5.000000e-02]], [[5.000000e-02]]], [[[7.500000e-01]], [[7.500000e-01]], [[7.500000e-01]], [[7.500000e-01]]], [[[1.500000e-01]], [[1.500000e-01]], [[1.500000e-01]], [[1.500000e-01]]], [[[5.000000e-01]], [[5.000000e-01]], [[5.000000e-01]], [[5.000000e-01]]], [[[1.000000e+00]], [[1.000000e+00]], [[1.000000e+00]], [[1.000000e+00]]], [[[1.000000e-01]], [[1.000000e-01]], [[1.000000e-01]], [[1.000000e-01]]]]> : tensor<8x4x1x1xf32>
  train.param @layer2.bias trainable : tensor<8xf32> = dense<0.000000e+00> : tensor<8xf32>
  train.param @layer3.weight trainable : tensor<5x8xf32> = dense<3.000000e-01> : tensor<5x8xf32>
  train.param @layer3.bias trainable : tensor<5xf32> = dense<0.000000e+00> : tensor<5xf32>
  func.func @train_step(%x: tensor<1x3x8x8xf32>, %label: i32, %lr: f32) -> f32 {
    %w0 = train.load @layer0.weight : tensor<4x3x3x3xf32>
    %b0 = train.load @layer0.bias : tensor<4xf32>
    %c0 = nn.conv2d %x, %w0, %b0 {strides = array<i64: 2, 2>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32>, tensor<4xf32>) -> tensor<1x4x4x4xf32>
    %r0 = nn.clip %c0 {min = 0.000000e+00 : f32, max = 6.000000e+00 : f32} : (tensor<1x4x4x4xf32>) -> tensor<1x4x4x4xf32>
    %w1 = train.load @layer1.weight : tensor<4x1x3x3xf32>
    %b1 = train.load @layer1.bias : tensor<4xf32>
    %c1 = nn.conv2d %r0, %w1, %b1 {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 4 : i64} : (tensor<1x4x4x4xf32>, tensor<4x1x3x3xf32>, tensor<4xf32>) -> tensor<1x4x4x4xf32>
    %r1 = nn.clip %c1 {min = 0.000000e+00 : f32, max = 6.000000e+00 : f32} : (tensor<1x4x4x4xf32>) -> tensor<1x4x4x4xf32>
    %w2 = train.load @layer2.weight : tensor<8x4x1x1xf32>
    %b2 = train.load @layer2.bias : tensor<8xf32>
    %c2 = nn.conv2d %r1, %w2, %b2 {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x4x4x4xf32>, tensor<8x4x1x1xf32>, tensor<8xf32>) -> tensor<1x8x4x4xf32>
    %g = nn.global_avg_pool %c2 : (tensor<1x8x4x4xf32>) -> tensor<1x8x1x1xf32>
    %f = nn.flatten %g {axis = 1 : i64} : (tensor<1x8x1x1xf32>) -> tensor<1x8xf32>
    %fw = train.load @layer3.weight : tensor<5x8xf32>
    %fb = train.load @layer3.bias : tensor<5xf32>
    %y = nn.gemm %f, %fw, %fb {alpha = 1.000000e+00 : f32, beta = 1.000000e+00 : f32, trans_a = false, trans_b = true} : (tensor<1x8xf32>, tensor<5x8xf32>, tensor<5xf32>) -> tensor<1x5xf32>
    %loss, %0 = train.softmax_cross_entropy %y, %label : (tensor<1x5xf32>, i32) -> (f32, tensor<1x5xf32>)
    %1 = nn.gemm %0, %fw {alpha = 1.000000e+00 : f32, beta = 1.000000e+00 : f32, trans_a = false, trans_b = false} : (tensor<1x5xf32>, tensor<5x8xf32>) -> tensor<1x8xf32>
    %2 = nn.gemm %0, %f {alpha = 1.000000e+00 : f32, beta = 1.000000e+00 : f32, trans_a = true, trans_b = false} : (tensor<1x5xf32>, tensor<1x8xf32>) -> tensor<5x8xf32>
    %3 = train.reduce_to_shape %0 : (tensor<1x5xf32>) -> tensor<5xf32>
    %4 = nn.reshape %1 : (tensor<1x8xf32>) -> tensor<1x8x1x1xf32>
    %5 = train.global_avg_pool_grad %4 : (tensor<1x8x1x1xf32>) -> tensor<1x8x4x4xf32>
    %6 = train.conv2d_input_grad %5, %w2 {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x8x4x4xf32>, tensor<8x4x1x1xf32>) -> tensor<1x4x4x4xf32>
    %7 = train.conv2d_weight_grad %5, %r1 {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64, channels = array<i64: 1, 3, 5, 6>} : (tensor<1x8x4x4xf32>, tensor<1x4x4x4xf32>) -> tensor<4x4x1x1xf32>
    %8 = train.bias_grad %5 : (tensor<1x8x4x4xf32>) -> tensor<8xf32>
    %9 = train.clip_grad %6, %r1 {min = 0.000000e+00 : f32, max = 6.000000e+00 : f32} : (tensor<1x4x4x4xf32>, tensor<1x4x4x4xf32>) -> tensor<1x4x4x4xf32>
    %10 = train.conv2d_input_grad %9, %w1 {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 4 : i64} : (tensor<1x4x4x4xf32>, tensor<4x1x3x3xf32>) -> tensor<1x4x4x4xf32>
    %11 = train.conv2d_weight_grad %9, %r0 {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 4 : i64} : (tensor<1x4x4x4xf32>, tensor<1x4x4x4xf32>) -> tensor<4x1x3x3xf32>
    %12 = train.bias_grad %9 : (tensor<1x4x4x4xf32>) -> tensor<4xf32>
    %13 = train.clip_grad %10, %r0 {min = 0.000000e+00 : f32, max = 6.000000e+00 : f32} : (tensor<1x4x4x4xf32>, tensor<1x4x4x4xf32>) -> tensor<1x4x4x4xf32>
    %14 = train.conv2d_weight_grad %13, %x {strides = array<i64: 2, 2>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x4x4x4xf32>, tensor<1x3x8x8xf32>) -> tensor<4x3x3x3xf32>
    %15 = train.bias_grad %13 : (tensor<1x4x4x4xf32>) -> tensor<4xf32>
    train.sgd @layer3.bias, %3, %lr : tensor<5xf32>
    train.sgd @layer3.weight, %2, %lr : tensor<5x8xf32>
    train.sgd @layer2.bias, %8, %lr : tensor<8xf32>
    train.sgd @layer2.weight, %7, %lr {channels = array<i64: 1, 3, 5, 6>} : tensor<4x4x1x1xf32>
    func.return %loss : f32
  }
}


// CHECK-LABEL: func.func @train_step(
// The forward stays whole: every op feeds the loss.
// CHECK:         nn.conv2d %[[R1:[a-z0-9_]+]], %{{.*}} {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>
// CHECK:         %[[LOSS:.*]], %[[DY:.*]] = train.softmax_cross_entropy
// CHECK-NEXT:    %[[DF:.*]] = nn.gemm %[[DY]], %{{.*}} {{{.*}}trans_a = false, trans_b = false}
// CHECK-NEXT:    %[[DFW:.*]] = nn.gemm %[[DY]]
// CHECK-NEXT:    %[[DFB:.*]] = train.reduce_to_shape %[[DY]]
// CHECK-NEXT:    %[[DG:.*]] = nn.reshape %[[DF]]
// CHECK-NEXT:    %[[DC2:.*]] = train.global_avg_pool_grad %[[DG]]
// No input gradient of layer 2, the earliest trained layer, and nothing below it; the
// selected channels' weight gradient only.
// CHECK-NEXT:    %[[DW2:.*]] = train.conv2d_weight_grad %[[DC2]], %[[R1]] {{{.*}}channels = array<i64: 1, 3, 5, 6>}
// CHECK-NEXT:    %[[DB2:.*]] = train.bias_grad %[[DC2]]
// CHECK-NEXT:    train.sgd @layer3.bias, %[[DFB]]
// CHECK-NEXT:    train.sgd @layer3.weight, %[[DFW]]
// CHECK-NEXT:    train.sgd @layer2.bias, %[[DB2]]
// CHECK-NEXT:    train.sgd @layer2.weight, %[[DW2]]
// CHECK-NEXT:    func.return %[[LOSS]] : f32

// STATS: prune-backward: removed 8 backward ops, 3.39k MACs: 2 train.bias_grad, 2 train.clip_grad, 2 train.conv2d_input_grad (1.09k MACs), 2 train.conv2d_weight_grad (2.30k MACs)
// STATS-NEXT: prune-backward: forward 2.86k MACs; backward 3.73k -> 336 MACs (20 -> 12 ops)

// -----

// The same net after `autodiff,sparse-update`: only the new classifier trains, so the
// backward is the classifier's two gradients.
builtin.module {
  train.param @layer0.weight : tensor<4x3x3x3xf32> = dense<1.000000e-01> : tensor<4x3x3x3xf32>
  train.param @layer0.bias : tensor<4xf32> = dense<0.000000e+00> : tensor<4xf32>
  train.param @layer1.weight : tensor<4x1x3x3xf32> = dense<2.000000e-01> : tensor<4x1x3x3xf32>
  train.param @layer1.bias : tensor<4xf32> = dense<0.000000e+00> : tensor<4xf32>
  train.param @layer2.weight : tensor<8x4x1x1xf32> = dense<[[[[2.500000e-01]], [[2.500000e-01]], [[2.500000e-01]], [[2.500000e-01]]], [[[1.000000e+00]], [[1.000000e+00]], [[1.000000e+00]], [[1.000000e+00]]], [[[5.000000e-02]], [[5.000000e-02]], [[5.000000e-02]], [[5.000000e-02]]], [[[7.500000e-01]], [[7.500000e-01]], [[7.500000e-01]], [[7.500000e-01]]], [[[1.500000e-01]], [[1.500000e-01]], [[1.500000e-01]], [[1.500000e-01]]], [[[5.000000e-01]], [[5.000000e-01]], [[5.000000e-01]], [[5.000000e-01]]], [[[1.000000e+00]], [[1.000000e+00]], [[1.000000e+00]], [[1.000000e+00]]], [[[1.000000e-01]], [[1.000000e-01]], [[1.000000e-01]], [[1.000000e-01]]]]> : tensor<8x4x1x1xf32>
  train.param @layer2.bias : tensor<8xf32> = dense<0.000000e+00> : tensor<8xf32>
  train.param @layer3.weight trainable : tensor<5x8xf32> = dense<3.000000e-01> : tensor<5x8xf32>
  train.param @layer3.bias trainable : tensor<5xf32> = dense<0.000000e+00> : tensor<5xf32>
  func.func @train_step(%x: tensor<1x3x8x8xf32>, %label: i32, %lr: f32) -> f32 {
    %w0 = train.load @layer0.weight : tensor<4x3x3x3xf32>
    %b0 = train.load @layer0.bias : tensor<4xf32>
    %c0 = nn.conv2d %x, %w0, %b0 {strides = array<i64: 2, 2>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32>, tensor<4xf32>) -> tensor<1x4x4x4xf32>
    %r0 = nn.clip %c0 {min = 0.000000e+00 : f32, max = 6.000000e+00 : f32} : (tensor<1x4x4x4xf32>) -> tensor<1x4x4x4xf32>
    %w1 = train.load @layer1.weight : tensor<4x1x3x3xf32>
    %b1 = train.load @layer1.bias : tensor<4xf32>
    %c1 = nn.conv2d %r0, %w1, %b1 {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 4 : i64} : (tensor<1x4x4x4xf32>, tensor<4x1x3x3xf32>, tensor<4xf32>) -> tensor<1x4x4x4xf32>
    %r1 = nn.clip %c1 {min = 0.000000e+00 : f32, max = 6.000000e+00 : f32} : (tensor<1x4x4x4xf32>) -> tensor<1x4x4x4xf32>
    %w2 = train.load @layer2.weight : tensor<8x4x1x1xf32>
    %b2 = train.load @layer2.bias : tensor<8xf32>
    %c2 = nn.conv2d %r1, %w2, %b2 {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x4x4x4xf32>, tensor<8x4x1x1xf32>, tensor<8xf32>) -> tensor<1x8x4x4xf32>
    %g = nn.global_avg_pool %c2 : (tensor<1x8x4x4xf32>) -> tensor<1x8x1x1xf32>
    %f = nn.flatten %g {axis = 1 : i64} : (tensor<1x8x1x1xf32>) -> tensor<1x8xf32>
    %fw = train.load @layer3.weight : tensor<5x8xf32>
    %fb = train.load @layer3.bias : tensor<5xf32>
    %y = nn.gemm %f, %fw, %fb {alpha = 1.000000e+00 : f32, beta = 1.000000e+00 : f32, trans_a = false, trans_b = true} : (tensor<1x8xf32>, tensor<5x8xf32>, tensor<5xf32>) -> tensor<1x5xf32>
    %loss, %0 = train.softmax_cross_entropy %y, %label : (tensor<1x5xf32>, i32) -> (f32, tensor<1x5xf32>)
    %1 = nn.gemm %0, %fw {alpha = 1.000000e+00 : f32, beta = 1.000000e+00 : f32, trans_a = false, trans_b = false} : (tensor<1x5xf32>, tensor<5x8xf32>) -> tensor<1x8xf32>
    %2 = nn.gemm %0, %f {alpha = 1.000000e+00 : f32, beta = 1.000000e+00 : f32, trans_a = true, trans_b = false} : (tensor<1x5xf32>, tensor<1x8xf32>) -> tensor<5x8xf32>
    %3 = train.reduce_to_shape %0 : (tensor<1x5xf32>) -> tensor<5xf32>
    %4 = nn.reshape %1 : (tensor<1x8xf32>) -> tensor<1x8x1x1xf32>
    %5 = train.global_avg_pool_grad %4 : (tensor<1x8x1x1xf32>) -> tensor<1x8x4x4xf32>
    %6 = train.conv2d_input_grad %5, %w2 {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x8x4x4xf32>, tensor<8x4x1x1xf32>) -> tensor<1x4x4x4xf32>
    %7 = train.conv2d_weight_grad %5, %r1 {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x8x4x4xf32>, tensor<1x4x4x4xf32>) -> tensor<8x4x1x1xf32>
    %8 = train.bias_grad %5 : (tensor<1x8x4x4xf32>) -> tensor<8xf32>
    %9 = train.clip_grad %6, %r1 {min = 0.000000e+00 : f32, max = 6.000000e+00 : f32} : (tensor<1x4x4x4xf32>, tensor<1x4x4x4xf32>) -> tensor<1x4x4x4xf32>
    %10 = train.conv2d_input_grad %9, %w1 {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 4 : i64} : (tensor<1x4x4x4xf32>, tensor<4x1x3x3xf32>) -> tensor<1x4x4x4xf32>
    %11 = train.conv2d_weight_grad %9, %r0 {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 4 : i64} : (tensor<1x4x4x4xf32>, tensor<1x4x4x4xf32>) -> tensor<4x1x3x3xf32>
    %12 = train.bias_grad %9 : (tensor<1x4x4x4xf32>) -> tensor<4xf32>
    %13 = train.clip_grad %10, %r0 {min = 0.000000e+00 : f32, max = 6.000000e+00 : f32} : (tensor<1x4x4x4xf32>, tensor<1x4x4x4xf32>) -> tensor<1x4x4x4xf32>
    %14 = train.conv2d_weight_grad %13, %x {strides = array<i64: 2, 2>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x4x4x4xf32>, tensor<1x3x8x8xf32>) -> tensor<4x3x3x3xf32>
    %15 = train.bias_grad %13 : (tensor<1x4x4x4xf32>) -> tensor<4xf32>
    train.sgd @layer3.bias, %3, %lr : tensor<5xf32>
    train.sgd @layer3.weight, %2, %lr : tensor<5x8xf32>
    func.return %loss : f32
  }
}


// CHECK-LABEL: func.func @train_step(
// CHECK:         %[[LOSS:.*]], %[[DY:.*]] = train.softmax_cross_entropy
// CHECK-NEXT:    %[[DFW:.*]] = nn.gemm %[[DY]], %{{.*}} {{{.*}}trans_a = true, trans_b = false}
// CHECK-NEXT:    %[[DFB:.*]] = train.reduce_to_shape %[[DY]]
// CHECK-NEXT:    train.sgd @layer3.bias, %[[DFB]]
// CHECK-NEXT:    train.sgd @layer3.weight, %[[DFW]]
// CHECK-NEXT:    func.return %[[LOSS]] : f32

// STATS: prune-backward: removed 13 backward ops, 3.94k MACs: 3 train.bias_grad, 3 train.conv2d_weight_grad (2.82k MACs), 2 train.clip_grad, 2 train.conv2d_input_grad (1.09k MACs), 1 nn.gemm (40 MACs), 1 nn.reshape, 1 train.global_avg_pool_grad
// STATS-NEXT: prune-backward: forward 2.86k MACs; backward 3.98k -> 40 MACs (18 -> 5 ops)

// NOSTEP: tinymlir-opt: error: {{.*}}in pass 'prune-backward': the module has no func.func @train_step (run autodiff first)
