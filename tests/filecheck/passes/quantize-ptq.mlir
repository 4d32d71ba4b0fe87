// RUN: tinymlir-opt %s --split-input-file -p 'quantize-ptq{calibration="%S/Inputs/ptq_calib.npy"}' | filecheck %s
// RUN: not tinymlir-opt %s --split-input-file -p 'quantize-ptq{calibration="%S/Inputs/missing.npy"}' 2>&1 | filecheck %s --check-prefix=ERR

// Inputs/ptq_calib.npy: 4 samples of shape [2, 4, 4], uniform in [-1, 1].
// ERR: tinymlir-opt: error: {{.*}}in pass 'quantize-ptq': cannot read calibration file '{{.*}}missing.npy': No such file or directory

// Conv + ReLU6, depthwise conv, residual add, global average pool, flatten, gemm: every
// compute op becomes a quant op; only the input is quantized and the output dequantized.
// CHECK-LABEL: func.func @forward
// CHECK-SAME:    (%[[X:.*]]: tensor<1x2x4x4xf32>) -> tensor<1x3xf32>
// CHECK:       %[[QX:.*]] = quant.quantize %[[X]] : tensor<1x2x4x4xf32> -> tensor<1x2x4x4x!quant.uniform<i8:f32, {{.*}}>>
// CHECK-DAG:   %[[W1:.*]] = quant.constant {{.*}} -> tensor<2x2x3x3x!quant.uniform<i8:f32:0, {{{.*}}:0, {{.*}}:0}>>
// CHECK-DAG:   %[[B1:.*]] = quant.constant {{.*}} : tensor<2xi32> -> tensor<2x!quant.uniform<i32:f32:0, {{{.*}}:0, {{.*}}:0}>>
// CHECK:       %[[C1:.*]] = quant.conv2d %[[QX]], %[[W1]], %[[B1]] {{.*}} -> tensor<1x2x4x4x!quant.uniform<i8:f32, {{.*}}:-128>>
// CHECK:       %[[C2:.*]] = quant.conv2d %[[C1]], %{{.*}}, %{{.*}} {{{.*}}groups = 2 : i64{{.*}}}
// CHECK:       %[[A:.*]] = quant.add %[[C2]], %[[C1]]
// CHECK:       %[[G:.*]] = quant.global_avg_pool %[[A]]
// CHECK:       %[[F:.*]] = nn.flatten %[[G]] {axis = 1 : i64} : (tensor<1x2x1x1x!quant.uniform<{{.*}}>>) -> tensor<1x2x!quant.uniform<{{.*}}>>
// CHECK:       %[[Y:.*]] = quant.fully_connected %[[F]], %{{.*}}, %{{.*}} : {{.*}} -> tensor<1x3x!quant.uniform<i8:f32, {{.*}}>>
// CHECK:       %[[OUT:.*]] = quant.dequantize %[[Y]]
// CHECK-NEXT:  func.return %[[OUT]] : tensor<1x3xf32>
// CHECK-NOT:   nn.conv2d
func.func @forward(%x: tensor<1x2x4x4xf32>) -> tensor<1x3xf32> {
  %w1 = arith.constant dense<[[[[0.5, -0.25, 0.1], [0.3, 0.2, -0.4], [0.0, 0.6, -0.1]], [[-0.3, 0.1, 0.2], [0.4, -0.5, 0.1], [0.2, 0.2, 0.3]]], [[[0.1, 0.1, 0.1], [-0.2, 0.7, -0.2], [0.1, 0.1, 0.1]], [[0.3, -0.3, 0.3], [-0.3, 0.3, -0.3], [0.3, -0.3, 0.3]]]]> : tensor<2x2x3x3xf32>
  %b1 = arith.constant dense<[0.1, -0.05]> : tensor<2xf32>
  %w2 = arith.constant dense<[[[[0.2, 0.1, 0.2], [0.1, 0.5, 0.1], [0.2, 0.1, 0.2]]], [[[-0.1, 0.3, -0.1], [0.3, -0.8, 0.3], [-0.1, 0.3, -0.1]]]]> : tensor<2x1x3x3xf32>
  %b2 = arith.constant dense<[0.0, 0.2]> : tensor<2xf32>
  %wf = arith.constant dense<[[1.0, -0.5], [0.25, 0.75], [-1.0, 0.5]]> : tensor<3x2xf32>
  %bf = arith.constant dense<[0.1, 0.0, -0.1]> : tensor<3xf32>
  %c1 = nn.conv2d %x, %w1, %b1 {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x2x4x4xf32>, tensor<2x2x3x3xf32>, tensor<2xf32>) -> tensor<1x2x4x4xf32>
  %r1 = nn.clip %c1 {min = 0.0 : f32, max = 6.0 : f32} : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %c2 = nn.conv2d %r1, %w2, %b2 {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 2 : i64} : (tensor<1x2x4x4xf32>, tensor<2x1x3x3xf32>, tensor<2xf32>) -> tensor<1x2x4x4xf32>
  %a = nn.add %c2, %r1 : (tensor<1x2x4x4xf32>, tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %g = nn.global_avg_pool %a : (tensor<1x2x4x4xf32>) -> tensor<1x2x1x1xf32>
  %f = nn.flatten %g {axis = 1 : i64} : (tensor<1x2x1x1xf32>) -> tensor<1x2xf32>
  %y = nn.gemm %f, %wf, %bf {alpha = 1.0 : f32, beta = 1.0 : f32, trans_a = false, trans_b = true} : (tensor<1x2xf32>, tensor<3x2xf32>, tensor<3xf32>) -> tensor<1x3xf32>
  func.return %y : tensor<1x3xf32>
}

// -----

// Clip(0.25, 1) is folded into the conv: its range includes 0, so act_min is the code of
// 0.25 (above the zero-point). max_pool runs on the int8 tensor with the same type.
// CHECK-LABEL: func.func @forward
// CHECK:       %[[C:.*]] = quant.conv2d %{{.*}}, %{{.*}} {{{.*}}act_min = {{-?[0-9]+}} : i32, act_max = 127 : i32} : {{.*}} -> tensor<1x1x4x4x![[T:quant.uniform<i8:f32, .*>]]>
// CHECK:       %[[P:.*]] = nn.max_pool %[[C]] {{.*}} : (tensor<1x1x4x4x![[T]]>) -> tensor<1x1x2x2x![[T]]>
// CHECK:       %[[D:.*]] = quant.dequantize %[[P]]
// CHECK-NEXT:  func.return %[[D]]
func.func @forward(%x: tensor<1x2x4x4xf32>) -> tensor<1x1x2x2xf32> {
  %w = arith.constant dense<[[[[0.5]], [[-0.5]]]]> : tensor<1x2x1x1xf32>
  %c = nn.conv2d %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x2x4x4xf32>, tensor<1x2x1x1xf32>) -> tensor<1x1x4x4xf32>
  %r = nn.clip %c {min = 0.25 : f32, max = 1.0 : f32} : (tensor<1x1x4x4xf32>) -> tensor<1x1x4x4xf32>
  %p = nn.max_pool %r {kernel = array<i64: 2, 2>, strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 0, 0>} : (tensor<1x1x4x4xf32>) -> tensor<1x1x2x2xf32>
  func.return %p : tensor<1x1x2x2xf32>
}

// -----

// An op without a quantized form (softmax) stays float after a dequantize; its result is
// returned as it is.
// CHECK-LABEL: func.func @forward
// CHECK:       %[[G:.*]] = quant.global_avg_pool
// CHECK:       %[[F:.*]] = nn.flatten %[[G]]
// CHECK:       %[[D:.*]] = quant.dequantize %[[F]]
// CHECK-NEXT:  %[[S:.*]] = nn.softmax %[[D]]
// CHECK-NEXT:  func.return %[[S]]
func.func @forward(%x: tensor<1x2x4x4xf32>) -> tensor<1x2xf32> {
  %g = nn.global_avg_pool %x : (tensor<1x2x4x4xf32>) -> tensor<1x2x1x1xf32>
  %f = nn.flatten %g {axis = 1 : i64} : (tensor<1x2x1x1xf32>) -> tensor<1x2xf32>
  %s = nn.softmax %f {axis = 1 : i64} : (tensor<1x2xf32>) -> tensor<1x2xf32>
  func.return %s : tensor<1x2xf32>
}
