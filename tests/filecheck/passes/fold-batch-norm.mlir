// RUN: tinymlir-opt %s --split-input-file -p fold-batch-norm | filecheck %s

// Into the conv: f = g / sqrt(v + eps) = [2, 0.5] (eps = 0), W' = W * f,
// b' = (b - m) * f + beta = [(1 - 1) * 2 + 3, (2 + 2) * 0.5 - 1] = [3, 1].
// CHECK-LABEL: func.func @conv_bn
// CHECK-SAME:    (%[[X:.*]]: tensor<1x1x3x3xf32>)
// CHECK-DAG:   %[[W:.*]] = arith.constant dense<{{\[}}[{{\[}}[2.000000e+00]]], {{\[}}[{{\[}}-1.000000e+00]]]]> : tensor<2x1x1x1xf32>
// CHECK-DAG:   %[[B:.*]] = arith.constant dense<[3.000000e+00, 1.000000e+00]> : tensor<2xf32>
// CHECK:       %[[Y:.*]] = nn.conv2d %[[X]], %[[W]], %[[B]]
// CHECK-NOT:   nn.batch_norm
// CHECK:       func.return %[[Y]]
func.func @conv_bn(%x: tensor<1x1x3x3xf32>) -> tensor<1x2x3x3xf32> {
  %w = arith.constant dense<[[[[1.0]]], [[[-2.0]]]]> : tensor<2x1x1x1xf32>
  %b = arith.constant dense<[1.0, 2.0]> : tensor<2xf32>
  %g = arith.constant dense<[2.0, 1.0]> : tensor<2xf32>
  %beta = arith.constant dense<[3.0, -1.0]> : tensor<2xf32>
  %m = arith.constant dense<[1.0, -2.0]> : tensor<2xf32>
  %v = arith.constant dense<[1.0, 4.0]> : tensor<2xf32>
  %c = nn.conv2d %x, %w, %b {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x1x3x3xf32>, tensor<2x1x1x1xf32>, tensor<2xf32>) -> tensor<1x2x3x3xf32>
  %y = nn.batch_norm %c, %g, %beta, %m, %v {epsilon = 0.0 : f32} : (tensor<1x2x3x3xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>) -> tensor<1x2x3x3xf32>
  func.return %y : tensor<1x2x3x3xf32>
}

// -----

// A conv without bias gets one: b' = -m * f + beta.
// CHECK-LABEL: func.func @conv_no_bias_bn
// CHECK:       %[[B:.*]] = arith.constant dense<[1.000000e+00, 0.000000e+00]> : tensor<2xf32>
// CHECK:       nn.conv2d %{{.*}}, %{{.*}}, %[[B]] {{.*}}groups = 2
// CHECK-NOT:   nn.batch_norm
func.func @conv_no_bias_bn(%x: tensor<1x2x3x3xf32>) -> tensor<1x2x3x3xf32> {
  %w = arith.constant dense<[[[[1.0]]], [[[-2.0]]]]> : tensor<2x1x1x1xf32>
  %g = arith.constant dense<[2.0, 1.0]> : tensor<2xf32>
  %beta = arith.constant dense<[3.0, -1.0]> : tensor<2xf32>
  %m = arith.constant dense<[1.0, -2.0]> : tensor<2xf32>
  %v = arith.constant dense<[1.0, 4.0]> : tensor<2xf32>
  %c = nn.conv2d %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 2 : i64} : (tensor<1x2x3x3xf32>, tensor<2x1x1x1xf32>) -> tensor<1x2x3x3xf32>
  %y = nn.batch_norm %c, %g, %beta, %m, %v {epsilon = 0.0 : f32} : (tensor<1x2x3x3xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>) -> tensor<1x2x3x3xf32>
  func.return %y : tensor<1x2x3x3xf32>
}

// -----

// The conv result is used twice, so the batch-norm becomes mul + add on [C, 1, 1] constants.
// CHECK-LABEL: func.func @conv_used_twice
// CHECK:       %[[C:.*]] = nn.conv2d
// CHECK-DAG:   %[[F:.*]] = arith.constant dense<{{\[}}[{{\[}}2.000000e+00]], {{\[}}[5.000000e-01]]]> : tensor<2x1x1xf32>
// CHECK-DAG:   %[[S:.*]] = arith.constant dense<{{\[}}[{{\[}}1.000000e+00]], {{\[}}[0.000000e+00]]]> : tensor<2x1x1xf32>
// CHECK:       %[[M:.*]] = nn.mul %[[C]], %[[F]]
// CHECK:       %[[A:.*]] = nn.add %[[M]], %[[S]]
// CHECK:       func.return %[[A]], %[[C]]
func.func @conv_used_twice(%x: tensor<1x2x3x3xf32>) -> (tensor<1x2x3x3xf32>, tensor<1x2x3x3xf32>) {
  %w = arith.constant dense<[[[[1.0]]], [[[-2.0]]]]> : tensor<2x1x1x1xf32>
  %g = arith.constant dense<[2.0, 1.0]> : tensor<2xf32>
  %beta = arith.constant dense<[3.0, -1.0]> : tensor<2xf32>
  %m = arith.constant dense<[1.0, -2.0]> : tensor<2xf32>
  %v = arith.constant dense<[1.0, 4.0]> : tensor<2xf32>
  %c = nn.conv2d %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 2 : i64} : (tensor<1x2x3x3xf32>, tensor<2x1x1x1xf32>) -> tensor<1x2x3x3xf32>
  %y = nn.batch_norm %c, %g, %beta, %m, %v {epsilon = 0.0 : f32} : (tensor<1x2x3x3xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>) -> tensor<1x2x3x3xf32>
  func.return %y, %c : tensor<1x2x3x3xf32>, tensor<1x2x3x3xf32>
}

// -----

// Negative: a parameter that is not a constant leaves the batch-norm alone.
// CHECK-LABEL: func.func @runtime_mean
// CHECK:       nn.batch_norm
func.func @runtime_mean(%x: tensor<1x2xf32>, %m: tensor<2xf32>) -> tensor<1x2xf32> {
  %g = arith.constant dense<[2.0, 1.0]> : tensor<2xf32>
  %beta = arith.constant dense<[3.0, -1.0]> : tensor<2xf32>
  %v = arith.constant dense<[1.0, 4.0]> : tensor<2xf32>
  %y = nn.batch_norm %x, %g, %beta, %m, %v {epsilon = 1.0e-05 : f32} : (tensor<1x2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>) -> tensor<1x2xf32>
  func.return %y : tensor<1x2xf32>
}
