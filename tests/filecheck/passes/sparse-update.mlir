// RUN: tinymlir-opt %s -p 'autodiff,sparse-update{bias-last=1 weights="2:0.5"}' | filecheck %s
// RUN: tinymlir-opt %s -p 'autodiff,sparse-update{weights="2:0.125"}' | filecheck %s --check-prefix=TIE
// RUN: tinymlir-opt %s -p 'autodiff{optimizer=sgdm},sparse-update{bias-last=1 weights="2:0.5"}' | filecheck %s --check-prefix=MOM
// RUN: echo '# the top quarter of layer 2' > %t.scheme
// RUN: echo 'bias last 2' >> %t.scheme
// RUN: echo 'weights 2:0.25' >> %t.scheme
// RUN: tinymlir-opt %s -p 'autodiff,sparse-update{scheme="%t.scheme"}' | filecheck %s --check-prefix=SCHEME
// RUN: not tinymlir-opt %s -p 'autodiff,sparse-update{weights="2:1,7:0.5"}' 2>&1 | filecheck %s --check-prefix=NOLAYER
// RUN: not tinymlir-opt %s -p 'autodiff,sparse-update{weights="2:0"}' 2>&1 | filecheck %s --check-prefix=ZERO
// RUN: not tinymlir-opt %s -p 'autodiff,sparse-update{bias-last=4}' 2>&1 | filecheck %s --check-prefix=BIAS
// RUN: echo 'bias last 1' > %t.bad.scheme
// RUN: echo 'weights 2:0.5 3' >> %t.bad.scheme
// RUN: not tinymlir-opt %s -p 'autodiff,sparse-update{scheme="%t.bad.scheme"}' 2>&1 | filecheck %s --check-prefix=SYNTAX
// RUN: not tinymlir-opt %s -p 'sparse-update' 2>&1 | filecheck %s --check-prefix=NOSTEP

// Layers: 0 conv, 1 depthwise conv, 2 pointwise conv (8 output channels, weight norms
// 0.5 2 0.1 1.5 0.3 1 2 0.2), 3 the classifier.
func.func @forward(%x: tensor<1x3x8x8xf32>) -> tensor<1x5xf32> {
  %w0 = arith.constant dense<0.1> : tensor<4x3x3x3xf32>
  %b0 = arith.constant dense<0.0> : tensor<4xf32>
  %c0 = nn.conv2d %x, %w0, %b0 {strides = array<i64: 2, 2>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32>, tensor<4xf32>) -> tensor<1x4x4x4xf32>
  %r0 = nn.clip %c0 {min = 0.0 : f32, max = 6.0 : f32} : (tensor<1x4x4x4xf32>) -> tensor<1x4x4x4xf32>
  %w1 = arith.constant dense<0.2> : tensor<4x1x3x3xf32>
  %b1 = arith.constant dense<0.0> : tensor<4xf32>
  %c1 = nn.conv2d %r0, %w1, %b1 {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 4 : i64} : (tensor<1x4x4x4xf32>, tensor<4x1x3x3xf32>, tensor<4xf32>) -> tensor<1x4x4x4xf32>
  %r1 = nn.clip %c1 {min = 0.0 : f32, max = 6.0 : f32} : (tensor<1x4x4x4xf32>) -> tensor<1x4x4x4xf32>
  %w2 = arith.constant dense<[[[[0.25]], [[0.25]], [[0.25]], [[0.25]]], [[[1.0]], [[1.0]], [[1.0]], [[1.0]]], [[[0.05]], [[0.05]], [[0.05]], [[0.05]]], [[[0.75]], [[0.75]], [[0.75]], [[0.75]]], [[[0.15]], [[0.15]], [[0.15]], [[0.15]]], [[[0.5]], [[0.5]], [[0.5]], [[0.5]]], [[[1.0]], [[1.0]], [[1.0]], [[1.0]]], [[[0.1]], [[0.1]], [[0.1]], [[0.1]]]]> : tensor<8x4x1x1xf32>
  %b2 = arith.constant dense<0.0> : tensor<8xf32>
  %c2 = nn.conv2d %r1, %w2, %b2 {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x4x4x4xf32>, tensor<8x4x1x1xf32>, tensor<8xf32>) -> tensor<1x8x4x4xf32>
  %g = nn.global_avg_pool %c2 : (tensor<1x8x4x4xf32>) -> tensor<1x8x1x1xf32>
  %f = nn.flatten %g {axis = 1 : i64} : (tensor<1x8x1x1xf32>) -> tensor<1x8xf32>
  %fw = arith.constant dense<0.3> : tensor<5x8xf32>
  %fb = arith.constant dense<0.0> : tensor<5xf32>
  %y = nn.gemm %f, %fw, %fb {alpha = 1.0 : f32, beta = 1.0 : f32, trans_a = false, trans_b = true} : (tensor<1x8xf32>, tensor<5x8xf32>, tensor<5xf32>) -> tensor<1x5xf32>
  func.return %y : tensor<1x5xf32>
}

// bias-last=1: the bias of layer 2 (the last layer before the classifier); layer 2's weights
// for the half of its channels of largest norm; the classifier. The rest is frozen.
// CHECK:       train.param @layer0.weight : tensor<4x3x3x3xf32>
// CHECK-NEXT:  train.param @layer0.bias : tensor<4xf32>
// CHECK-NEXT:  train.param @layer1.weight : tensor<4x1x3x3xf32>
// CHECK-NEXT:  train.param @layer1.bias : tensor<4xf32>
// CHECK-NEXT:  train.param @layer2.weight trainable : tensor<8x4x1x1xf32>
// CHECK-NEXT:  train.param @layer2.bias trainable : tensor<8xf32>
// CHECK-NEXT:  train.param @layer3.weight trainable : tensor<5x8xf32>
// CHECK-NEXT:  train.param @layer3.bias trainable : tensor<5xf32>
// CHECK-LABEL: func.func @train_step(
// CHECK:         %[[DY2:.*]] = train.global_avg_pool_grad
// The weight gradient holds the selected channels' rows only.
// CHECK:         %[[DW2:.*]] = train.conv2d_weight_grad %[[DY2]], %{{.*}} {{{.*}}channels = array<i64: 1, 3, 5, 6>} : ({{.*}}) -> tensor<4x4x1x1xf32>
// CHECK-NEXT:    %[[DB2:.*]] = train.bias_grad %[[DY2]]
// Frozen parameters' gradients remain (prune-backward's job), without updates.
// CHECK:         train.conv2d_weight_grad
// CHECK-NOT:     train.sgd @layer{{[01]}}
// CHECK:         train.sgd @layer3.bias
// CHECK-NEXT:    train.sgd @layer3.weight
// CHECK-NEXT:    train.sgd @layer2.bias, %[[DB2]], %{{.*}} : tensor<8xf32>
// CHECK-NEXT:    train.sgd @layer2.weight, %[[DW2]], %{{.*}} {channels = array<i64: 1, 3, 5, 6>} : tensor<4x4x1x1xf32>
// CHECK-NEXT:    func.return

// One channel of 8: channels 1 and 6 tie at the largest norm, the lower index wins; no bias
// but the classifier's.
// TIE:         train.param @layer2.weight trainable
// TIE-NEXT:    train.param @layer2.bias : tensor<8xf32>
// TIE-LABEL:   func.func @train_step(
// TIE:         train.sgd @layer2.weight, %{{.*}}, %{{.*}} {channels = array<i64: 1>} : tensor<1x4x1x1xf32>

// Frozen parameters' momentum buffers go; the trained ones' stay.
// MOM:         train.param @layer1.bias : tensor<4xf32>
// MOM-NEXT:    train.param @layer2.weight trainable : tensor<8x4x1x1xf32>
// MOM-NEXT:    train.param @layer2.weight.momentum : tensor<8x4x1x1xf32>
// MOM-NOT:     @layer0.weight.momentum
// MOM-LABEL:   func.func @train_step(
// MOM:         train.sgd @layer2.weight, %{{.*}}, %{{.*}} {momentum = 9.000000e-01 : f32, velocity = @layer2.weight.momentum, channels = array<i64: 1, 3, 5, 6>} : tensor<4x4x1x1xf32>

// SCHEME:      train.param @layer0.bias : tensor<4xf32>
// SCHEME:      train.param @layer1.bias trainable : tensor<4xf32>
// SCHEME-LABEL: func.func @train_step(
// SCHEME:      train.sgd @layer2.weight, %{{.*}}, %{{.*}} {channels = array<i64: 1, 6>} : tensor<2x4x1x1xf32>
// SCHEME-NEXT: train.sgd @layer1.bias

// NOLAYER: tinymlir-opt: error: {{.*}}: in pass 'sparse-update': weights:1:5: layer 7 does not exist: the model has 4 layers, 0 to 3 (layer 3 is the classifier)
// ZERO: tinymlir-opt: error: {{.*}}: in pass 'sparse-update': weights:1:3: ratio 0 for layer 2 is outside (0, 1]: leave layer 2 out to keep its weights frozen
// BIAS: tinymlir-opt: error: {{.*}}: in pass 'sparse-update': bias-last=4: the model has only 3 layers before the classifier (layer 3)
// SYNTAX: tinymlir-opt: error: {{.*}}: in pass 'sparse-update': {{.*}}.bad.scheme:2:16: unexpected end of line, expected ':'
// NOSTEP: tinymlir-opt: error: {{.*}}: in pass 'sparse-update': the module has no func.func @train_step (run autodiff first)
