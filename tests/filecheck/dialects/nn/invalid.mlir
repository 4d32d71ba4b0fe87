// Each verifier error of the nn dialect: one case per split-input chunk.
// RUN: tinymlir-opt %s --split-input-file --verify-diagnostics | filecheck %s

func.func @conv_result_shape(%x: tensor<1x3x8x8xf32>, %w: tensor<4x3x3x3xf32>) -> tensor<1x4x8x8xf32> {
  %0 = nn.conv2d %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32>) -> tensor<1x4x8x8xf32>
  func.return %0 : tensor<1x4x8x8xf32>
}

// CHECK: nn.conv2d: result shape must be [1, 4, 6, 6], got [1, 4, 8, 8]

// -----

func.func @conv_bad_groups(%x: tensor<1x4x8x8xf32>, %w: tensor<4x1x3x3xf32>) -> tensor<1x4x6x6xf32> {
  %0 = nn.conv2d %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 2 : i64} : (tensor<1x4x8x8xf32>, tensor<4x1x3x3xf32>) -> tensor<1x4x6x6xf32>
  func.return %0 : tensor<1x4x6x6xf32>
}

// CHECK: nn.conv2d: 4 input channels, weight [4, 1, 3, 3] and groups=2 do not match

// -----

func.func @conv_strides_length(%x: tensor<1x3x8x8xf32>, %w: tensor<4x3x3x3xf32>) -> tensor<1x4x6x6xf32> {
  %0 = nn.conv2d %x, %w {strides = array<i64: 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32>) -> tensor<1x4x6x6xf32>
  func.return %0 : tensor<1x4x6x6xf32>
}

// CHECK: nn.conv2d: 'strides' must hold 2 positive integers, got [1]

// -----

func.func @conv_negative_pad(%x: tensor<1x3x8x8xf32>, %w: tensor<4x3x3x3xf32>) -> tensor<1x4x6x6xf32> {
  %0 = nn.conv2d %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 0, -1, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32>) -> tensor<1x4x6x6xf32>
  func.return %0 : tensor<1x4x6x6xf32>
}

// CHECK: nn.conv2d: 'pads' must hold 4 non-negative integers, got [0, -1, 0, 0]

// -----

func.func @conv_rank(%x: tensor<3x8x8xf32>, %w: tensor<4x3x3x3xf32>) -> tensor<1x4x6x6xf32> {
  %0 = nn.conv2d %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<3x8x8xf32>, tensor<4x3x3x3xf32>) -> tensor<1x4x6x6xf32>
  func.return %0 : tensor<1x4x6x6xf32>
}

// CHECK: nn.conv2d: expects a 4-D NCHW input and OIHW weight, got [3, 8, 8] and [4, 3, 3, 3]

// -----

func.func @conv_bias_shape(%x: tensor<1x3x8x8xf32>, %w: tensor<4x3x3x3xf32>, %b: tensor<3xf32>) -> tensor<1x4x6x6xf32> {
  %0 = nn.conv2d %x, %w, %b {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32>, tensor<3xf32>) -> tensor<1x4x6x6xf32>
  func.return %0 : tensor<1x4x6x6xf32>
}

// CHECK: nn.conv2d: bias must have shape [4], got [3]

// -----

func.func @clip_min_above_max(%x: tensor<1x4xf32>) -> tensor<1x4xf32> {
  %0 = nn.clip %x {min = 6.0 : f32, max = 0.0 : f32} : (tensor<1x4xf32>) -> tensor<1x4xf32>
  func.return %0 : tensor<1x4xf32>
}

// CHECK: nn.clip: min 6.0 is above max 0.0

// -----

func.func @relu_result_type(%x: tensor<1x4xf32>) -> tensor<4xf32> {
  %0 = nn.relu %x : (tensor<1x4xf32>) -> tensor<4xf32>
  func.return %0 : tensor<4xf32>
}

// CHECK: nn.relu: result type must equal the operand type tensor<1x4xf32>

// -----

func.func @softmax_axis(%x: tensor<1x4xf32>) -> tensor<1x4xf32> {
  %0 = nn.softmax %x {axis = 2 : i64} : (tensor<1x4xf32>) -> tensor<1x4xf32>
  func.return %0 : tensor<1x4xf32>
}

// CHECK: nn.softmax: axis 2 is out of range for rank 2

// -----

func.func @gemm_shapes(%a: tensor<2x8xf32>, %b: tensor<10x7xf32>) -> tensor<2x10xf32> {
  %0 = nn.gemm %a, %b {alpha = 1.0 : f32, beta = 1.0 : f32, trans_a = false, trans_b = true} : (tensor<2x8xf32>, tensor<10x7xf32>) -> tensor<2x10xf32>
  func.return %0 : tensor<2x10xf32>
}

// CHECK: nn.gemm: shapes [2, 8] x [10, 7] -> [2, 10] do not match

// -----

func.func @gemm_rank(%a: tensor<2x8x1xf32>, %b: tensor<10x8xf32>) -> tensor<2x10xf32> {
  %0 = nn.gemm %a, %b {alpha = 1.0 : f32, beta = 1.0 : f32, trans_a = false, trans_b = true} : (tensor<2x8x1xf32>, tensor<10x8xf32>) -> tensor<2x10xf32>
  func.return %0 : tensor<2x10xf32>
}

// CHECK: nn.gemm: operands must be 2-D, got [2, 8, 1] and [10, 8]

// -----

func.func @gemm_c_broadcast(%a: tensor<2x8xf32>, %b: tensor<10x8xf32>, %c: tensor<3xf32>) -> tensor<2x10xf32> {
  %0 = nn.gemm %a, %b, %c {alpha = 1.0 : f32, beta = 1.0 : f32, trans_a = false, trans_b = true} : (tensor<2x8xf32>, tensor<10x8xf32>, tensor<3xf32>) -> tensor<2x10xf32>
  func.return %0 : tensor<2x10xf32>
}

// CHECK: nn.gemm: C of shape [3] does not broadcast to [2, 10]

// -----

func.func @matmul_inner(%a: tensor<2x8xf32>, %b: tensor<7x5xf32>) -> tensor<2x5xf32> {
  %0 = nn.matmul %a, %b : (tensor<2x8xf32>, tensor<7x5xf32>) -> tensor<2x5xf32>
  func.return %0 : tensor<2x5xf32>
}

// CHECK: nn.matmul: inner dimensions of [2, 8] and [7, 5] differ

// -----

func.func @add_broadcast(%x: tensor<1x4x2x2xf32>, %y: tensor<3x1x1xf32>) -> tensor<1x4x2x2xf32> {
  %0 = nn.add %x, %y : (tensor<1x4x2x2xf32>, tensor<3x1x1xf32>) -> tensor<1x4x2x2xf32>
  func.return %0 : tensor<1x4x2x2xf32>
}

// CHECK: nn.add: shapes [1, 4, 2, 2] and [3, 1, 1] do not broadcast to [1, 4, 2, 2]

// -----

func.func @mul_result(%x: tensor<1x4xf32>, %y: tensor<4xf32>) -> tensor<4x4xf32> {
  %0 = nn.mul %x, %y : (tensor<1x4xf32>, tensor<4xf32>) -> tensor<4x4xf32>
  func.return %0 : tensor<4x4xf32>
}

// CHECK: nn.mul: shapes [1, 4] and [4] do not broadcast to [4, 4]

// -----

func.func @batch_norm_param(%x: tensor<1x4x2x2xf32>, %s: tensor<4xf32>, %b: tensor<4xf32>, %m: tensor<3xf32>, %v: tensor<4xf32>) -> tensor<1x4x2x2xf32> {
  %0 = nn.batch_norm %x, %s, %b, %m, %v {epsilon = 1.0e-05 : f32} : (tensor<1x4x2x2xf32>, tensor<4xf32>, tensor<4xf32>, tensor<3xf32>, tensor<4xf32>) -> tensor<1x4x2x2xf32>
  func.return %0 : tensor<1x4x2x2xf32>
}

// CHECK: nn.batch_norm: mean must have shape [4], got [3]

// -----

func.func @batch_norm_rank(%x: tensor<4xf32>, %s: tensor<4xf32>) -> tensor<4xf32> {
  %0 = nn.batch_norm %x, %s, %s, %s, %s {epsilon = 1.0e-05 : f32} : (tensor<4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>
  func.return %0 : tensor<4xf32>
}

// CHECK: nn.batch_norm: expects an input of rank >= 2 and the same result shape

// -----

func.func @global_avg_pool_shape(%x: tensor<1x4x8x8xf32>) -> tensor<1x4xf32> {
  %0 = nn.global_avg_pool %x : (tensor<1x4x8x8xf32>) -> tensor<1x4xf32>
  func.return %0 : tensor<1x4xf32>
}

// CHECK: nn.global_avg_pool: [1, 4, 8, 8] -> [1, 4]: result must be N x C x 1 x 1

// -----

func.func @max_pool_result(%x: tensor<1x4x8x8xf32>) -> tensor<1x4x3x3xf32> {
  %0 = nn.max_pool %x {kernel = array<i64: 2, 2>, strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 0, 0>} : (tensor<1x4x8x8xf32>) -> tensor<1x4x3x3xf32>
  func.return %0 : tensor<1x4x3x3xf32>
}

// CHECK: nn.max_pool: result shape must be [1, 4, 4, 4], got [1, 4, 3, 3]

// -----

func.func @max_pool_kernel(%x: tensor<1x4x8x8xf32>) -> tensor<1x4x4x4xf32> {
  %0 = nn.max_pool %x {kernel = array<i64: 2, 2, 2>, strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 0, 0>} : (tensor<1x4x8x8xf32>) -> tensor<1x4x4x4xf32>
  func.return %0 : tensor<1x4x4x4xf32>
}

// CHECK: nn.max_pool: 'kernel' must hold 2 positive integers, got [2, 2, 2]

// -----

func.func @avg_pool_rank(%x: tensor<4x8x8xf32>) -> tensor<4x4x4xf32> {
  %0 = nn.avg_pool %x {kernel = array<i64: 2, 2>, strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 0, 0>, count_include_pad = false} : (tensor<4x8x8xf32>) -> tensor<4x4x4xf32>
  func.return %0 : tensor<4x4x4xf32>
}

// CHECK: nn.avg_pool: expects a 4-D NCHW input, got [4, 8, 8]

// -----

func.func @max_pool_element_type(%x: tensor<1x4x8x8xf32>) -> tensor<1x4x4x4xf16> {
  %0 = nn.max_pool %x {kernel = array<i64: 2, 2>, strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 0, 0>} : (tensor<1x4x8x8xf32>) -> tensor<1x4x4x4xf16>
  func.return %0 : tensor<1x4x4x4xf16>
}

// CHECK: nn.max_pool: element types differ: f32 and f16

// -----

func.func @flatten_result(%x: tensor<1x4x2x3xf32>) -> tensor<4x6xf32> {
  %0 = nn.flatten %x {axis = 1 : i64} : (tensor<1x4x2x3xf32>) -> tensor<4x6xf32>
  func.return %0 : tensor<4x6xf32>
}

// CHECK: nn.flatten: result shape must be [1, 24], got [4, 6]

// -----

func.func @flatten_axis(%x: tensor<1x4x2x3xf32>) -> tensor<24x1xf32> {
  %0 = nn.flatten %x {axis = 5 : i64} : (tensor<1x4x2x3xf32>) -> tensor<24x1xf32>
  func.return %0 : tensor<24x1xf32>
}

// CHECK: nn.flatten: axis 5 is out of range for rank 4

// -----

func.func @reshape_count(%x: tensor<1x4x2x3xf32>) -> tensor<5x5xf32> {
  %0 = nn.reshape %x : (tensor<1x4x2x3xf32>) -> tensor<5x5xf32>
  func.return %0 : tensor<5x5xf32>
}

// CHECK: nn.reshape: 24 elements cannot be reshaped into 25

// -----

func.func @transpose_perm(%x: tensor<1x4x2x3xf32>) -> tensor<1x2x3x4xf32> {
  %0 = nn.transpose %x {perm = array<i64: 0, 2, 2, 1>} : (tensor<1x4x2x3xf32>) -> tensor<1x2x3x4xf32>
  func.return %0 : tensor<1x2x3x4xf32>
}

// CHECK: nn.transpose: perm [0, 2, 2, 1] is not a permutation of rank 4

// -----

func.func @transpose_result(%x: tensor<1x4x2x3xf32>) -> tensor<1x2x4x3xf32> {
  %0 = nn.transpose %x {perm = array<i64: 0, 2, 3, 1>} : (tensor<1x4x2x3xf32>) -> tensor<1x2x4x3xf32>
  func.return %0 : tensor<1x2x4x3xf32>
}

// CHECK: nn.transpose: result shape must be [1, 2, 3, 4]

// -----

func.func @concat_total(%x: tensor<1x4x2x3xf32>, %y: tensor<1x2x2x3xf32>) -> tensor<1x7x2x3xf32> {
  %0 = nn.concat %x, %y {axis = 1 : i64} : (tensor<1x4x2x3xf32>, tensor<1x2x2x3xf32>) -> tensor<1x7x2x3xf32>
  func.return %0 : tensor<1x7x2x3xf32>
}

// CHECK: nn.concat: operands add up to 6 along axis 1, result has 7

// -----

func.func @concat_operand_shape(%x: tensor<1x4x2x3xf32>, %y: tensor<1x2x2x2xf32>) -> tensor<1x6x2x3xf32> {
  %0 = nn.concat %x, %y {axis = 1 : i64} : (tensor<1x4x2x3xf32>, tensor<1x2x2x2xf32>) -> tensor<1x6x2x3xf32>
  func.return %0 : tensor<1x6x2x3xf32>
}

// CHECK: nn.concat: operand shape [1, 2, 2, 2] does not fit result [1, 6, 2, 3]

// -----

func.func @concat_axis(%x: tensor<1x4xf32>) -> tensor<1x4xf32> {
  %0 = nn.concat %x {axis = 2 : i64} : (tensor<1x4xf32>) -> tensor<1x4xf32>
  func.return %0 : tensor<1x4xf32>
}

// CHECK: nn.concat: axis 2 is out of range for rank 2

// -----

func.func @concat_element_type(%x: tensor<1x4xf32>, %y: tensor<1x4xf16>) -> tensor<2x4xf32> {
  %0 = nn.concat %x, %y {axis = 0 : i64} : (tensor<1x4xf32>, tensor<1x4xf16>) -> tensor<2x4xf32>
  func.return %0 : tensor<2x4xf32>
}

// CHECK: nn.concat: element types differ: f16 and f32

// -----

func.func @pad_length(%x: tensor<1x4xf32>) -> tensor<1x6xf32> {
  %0 = nn.pad %x {pads = array<i64: 0, 1, 1>, value = 0.0 : f32} : (tensor<1x4xf32>) -> tensor<1x6xf32>
  func.return %0 : tensor<1x6xf32>
}

// CHECK: nn.pad: 'pads' must hold 4 non-negative integers, got [0, 1, 1]

// -----

func.func @pad_result(%x: tensor<1x4xf32>) -> tensor<1x5xf32> {
  %0 = nn.pad %x {pads = array<i64: 0, 1, 0, 1>, value = 0.0 : f32} : (tensor<1x4xf32>) -> tensor<1x5xf32>
  func.return %0 : tensor<1x5xf32>
}

// CHECK: nn.pad: result shape must be [1, 6], got [1, 5]

// -----

func.func @matmul_result_shape(%a: tensor<2x8xf32>, %b: tensor<8x5xf32>) {
  // CHECK: nn.matmul: result shape must be [2, 5], got [7, 7]
  %y = nn.matmul %a, %b : (tensor<2x8xf32>, tensor<8x5xf32>) -> tensor<7x7xf32>
  func.return
}

// -----

func.func @add_element_types(%a: tensor<2xf32>, %b: tensor<2xf16>) {
  // CHECK: nn.add: element types differ: f32 and f16
  %y = nn.add %a, %b : (tensor<2xf32>, tensor<2xf16>) -> tensor<2xf32>
  func.return
}

// -----

func.func @float_strides(%x: tensor<1x1x4x4xf32>) {
  // CHECK: nn.max_pool: 'strides' must be an array<i64: ...>, got element type f32
  %y = nn.max_pool %x {kernel = array<i64: 2, 2>, strides = array<f32: 1.0, 1.0>, pads = array<i64: 0, 0, 0, 0>} : (tensor<1x1x4x4xf32>) -> tensor<1x1x3x3xf32>
  func.return
}

// -----

func.func @pool_kernel_too_big(%x: tensor<1x1x2x2xf32>) {
  // CHECK: nn.max_pool: kernel [3, 3] is larger than the padded input [2, 2]
  %y = nn.max_pool %x {kernel = array<i64: 3, 3>, strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>} : (tensor<1x1x2x2xf32>) -> tensor<1x1x1x1xf32>
  func.return
}
