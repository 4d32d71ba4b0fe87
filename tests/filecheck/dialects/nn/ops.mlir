// Every nn op parses and prints back, in the custom and in the generic form.
// RUN: tinymlir-opt %s | tinymlir-opt | filecheck %s
// RUN: tinymlir-opt %s --print-op-generic | tinymlir-opt | filecheck %s

func.func @conv(%x: tensor<1x3x8x8xf32>, %w: tensor<4x3x3x3xf32>, %b: tensor<4xf32>, %dw: tensor<4x1x3x3xf32>) -> tensor<1x4x4x4xf32> {
  %0 = nn.conv2d %x, %w, %b {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32>, tensor<4xf32>) -> tensor<1x4x8x8xf32>
  %1 = nn.conv2d %0, %dw {strides = array<i64: 2, 2>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 4 : i64} : (tensor<1x4x8x8xf32>, tensor<4x1x3x3xf32>) -> tensor<1x4x4x4xf32>
  func.return %1 : tensor<1x4x4x4xf32>
}

// CHECK-LABEL: func.func @conv(
// CHECK-SAME:      %[[X:.*]]: tensor<1x3x8x8xf32>, %[[W:.*]]: tensor<4x3x3x3xf32>, %[[B:.*]]: tensor<4xf32>, %[[DW:.*]]: tensor<4x1x3x3xf32>)
// CHECK:         %[[C:.*]] = nn.conv2d %[[X]], %[[W]], %[[B]] {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32>, tensor<4xf32>) -> tensor<1x4x8x8xf32>
// CHECK:         nn.conv2d %[[C]], %[[DW]] {strides = array<i64: 2, 2>, {{.*}} groups = 4 : i64} : (tensor<1x4x8x8xf32>, tensor<4x1x3x3xf32>) -> tensor<1x4x4x4xf32>

func.func @dense(%a: tensor<2x8xf32>, %b: tensor<10x8xf32>, %c: tensor<10xf32>, %m: tensor<3x2x8xf32>, %n: tensor<8x5xf32>) -> (tensor<2x10xf32>, tensor<2x10xf32>, tensor<3x2x5xf32>) {
  %0 = nn.gemm %a, %b, %c {alpha = 1.000000e+00 : f32, beta = 1.000000e+00 : f32, trans_a = false, trans_b = true} : (tensor<2x8xf32>, tensor<10x8xf32>, tensor<10xf32>) -> tensor<2x10xf32>
  %1 = nn.gemm %a, %b {alpha = 5.000000e-01 : f32, beta = 0.000000e+00 : f32, trans_a = false, trans_b = true} : (tensor<2x8xf32>, tensor<10x8xf32>) -> tensor<2x10xf32>
  %2 = nn.matmul %m, %n : (tensor<3x2x8xf32>, tensor<8x5xf32>) -> tensor<3x2x5xf32>
  func.return %0, %1, %2 : tensor<2x10xf32>, tensor<2x10xf32>, tensor<3x2x5xf32>
}

// CHECK-LABEL: func.func @dense(
// CHECK:         nn.gemm %{{.*}}, %{{.*}}, %{{.*}} {alpha = 1.000000e+00 : f32, beta = 1.000000e+00 : f32, trans_a = false, trans_b = true} : (tensor<2x8xf32>, tensor<10x8xf32>, tensor<10xf32>) -> tensor<2x10xf32>
// CHECK:         nn.gemm %{{[^,]*}}, %{{[^,]*}} {alpha = 5.000000e-01 : f32, beta = 0.000000e+00 : f32, {{.*}}} : (tensor<2x8xf32>, tensor<10x8xf32>) -> tensor<2x10xf32>
// CHECK:         nn.matmul %{{.*}}, %{{.*}} : (tensor<3x2x8xf32>, tensor<8x5xf32>) -> tensor<3x2x5xf32>

func.func @elementwise(%x: tensor<1x4x2x2xf32>, %y: tensor<4x1x1xf32>) -> tensor<1x4x2x2xf32> {
  %0 = nn.add %x, %y : (tensor<1x4x2x2xf32>, tensor<4x1x1xf32>) -> tensor<1x4x2x2xf32>
  %1 = nn.sub %0, %y : (tensor<1x4x2x2xf32>, tensor<4x1x1xf32>) -> tensor<1x4x2x2xf32>
  %2 = nn.mul %1, %x : (tensor<1x4x2x2xf32>, tensor<1x4x2x2xf32>) -> tensor<1x4x2x2xf32>
  %3 = nn.div %2, %y : (tensor<1x4x2x2xf32>, tensor<4x1x1xf32>) -> tensor<1x4x2x2xf32>
  %4 = nn.relu %3 : (tensor<1x4x2x2xf32>) -> tensor<1x4x2x2xf32>
  %5 = nn.clip %4 {min = 0.000000e+00 : f32, max = 6.000000e+00 : f32} : (tensor<1x4x2x2xf32>) -> tensor<1x4x2x2xf32>
  %6 = nn.softmax %5 {axis = 1 : i64} : (tensor<1x4x2x2xf32>) -> tensor<1x4x2x2xf32>
  func.return %6 : tensor<1x4x2x2xf32>
}

// CHECK-LABEL: func.func @elementwise(
// CHECK:         %[[ADD:.*]] = nn.add %{{.*}}, %{{.*}} : (tensor<1x4x2x2xf32>, tensor<4x1x1xf32>) -> tensor<1x4x2x2xf32>
// CHECK:         %[[SUB:.*]] = nn.sub %[[ADD]], %{{.*}} : (tensor<1x4x2x2xf32>, tensor<4x1x1xf32>) -> tensor<1x4x2x2xf32>
// CHECK:         %[[MUL:.*]] = nn.mul %[[SUB]], %{{.*}} : (tensor<1x4x2x2xf32>, tensor<1x4x2x2xf32>) -> tensor<1x4x2x2xf32>
// CHECK:         %[[DIV:.*]] = nn.div %[[MUL]], %{{.*}} : (tensor<1x4x2x2xf32>, tensor<4x1x1xf32>) -> tensor<1x4x2x2xf32>
// CHECK:         %[[RELU:.*]] = nn.relu %[[DIV]] : (tensor<1x4x2x2xf32>) -> tensor<1x4x2x2xf32>
// CHECK:         %[[CLIP:.*]] = nn.clip %[[RELU]] {min = 0.000000e+00 : f32, max = 6.000000e+00 : f32} : (tensor<1x4x2x2xf32>) -> tensor<1x4x2x2xf32>
// CHECK:         nn.softmax %[[CLIP]] {axis = 1 : i64} : (tensor<1x4x2x2xf32>) -> tensor<1x4x2x2xf32>

func.func @batch_norm(%x: tensor<1x4x2x2xf32>, %s: tensor<4xf32>, %b: tensor<4xf32>, %m: tensor<4xf32>, %v: tensor<4xf32>) -> tensor<1x4x2x2xf32> {
  %0 = nn.batch_norm %x, %s, %b, %m, %v {epsilon = 1.000000e-05 : f32} : (tensor<1x4x2x2xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>) -> tensor<1x4x2x2xf32>
  func.return %0 : tensor<1x4x2x2xf32>
}

// CHECK-LABEL: func.func @batch_norm(
// CHECK-SAME:      %[[X:[^:]*]]: tensor<1x4x2x2xf32>, %[[S:[^:]*]]: tensor<4xf32>, %[[B:[^:]*]]: tensor<4xf32>, %[[M:[^:]*]]: tensor<4xf32>, %[[V:[^:]*]]: tensor<4xf32>)
// CHECK:         nn.batch_norm %[[X]], %[[S]], %[[B]], %[[M]], %[[V]] {epsilon = 1.000000e-05 : f32} : (tensor<1x4x2x2xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>) -> tensor<1x4x2x2xf32>

func.func @pooling(%x: tensor<1x4x8x8xf32>, %q: tensor<1x4x8x8x!quant.uniform<i8:f32, 0.5:-3>>) -> (tensor<1x4x1x1xf32>, tensor<1x4x4x4xf32>, tensor<1x4x3x3xf32>, tensor<1x4x4x4x!quant.uniform<i8:f32, 0.5:-3>>) {
  %0 = nn.global_avg_pool %x : (tensor<1x4x8x8xf32>) -> tensor<1x4x1x1xf32>
  %1 = nn.avg_pool %x {kernel = array<i64: 2, 2>, strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 0, 0>, count_include_pad = false} : (tensor<1x4x8x8xf32>) -> tensor<1x4x4x4xf32>
  %2 = nn.max_pool %x {kernel = array<i64: 3, 3>, strides = array<i64: 3, 3>, pads = array<i64: 1, 1, 0, 0>} : (tensor<1x4x8x8xf32>) -> tensor<1x4x3x3xf32>
  %3 = nn.max_pool %q {kernel = array<i64: 2, 2>, strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 0, 0>} : (tensor<1x4x8x8x!quant.uniform<i8:f32, 0.5:-3>>) -> tensor<1x4x4x4x!quant.uniform<i8:f32, 0.5:-3>>
  func.return %0, %1, %2, %3 : tensor<1x4x1x1xf32>, tensor<1x4x4x4xf32>, tensor<1x4x3x3xf32>, tensor<1x4x4x4x!quant.uniform<i8:f32, 0.5:-3>>
}

// CHECK-LABEL: func.func @pooling(
// CHECK:         nn.global_avg_pool %{{.*}} : (tensor<1x4x8x8xf32>) -> tensor<1x4x1x1xf32>
// CHECK:         nn.avg_pool %{{.*}} {kernel = array<i64: 2, 2>, strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 0, 0>, count_include_pad = false} : (tensor<1x4x8x8xf32>) -> tensor<1x4x4x4xf32>
// CHECK:         nn.max_pool %{{.*}} {kernel = array<i64: 3, 3>, strides = array<i64: 3, 3>, pads = array<i64: 1, 1, 0, 0>} : (tensor<1x4x8x8xf32>) -> tensor<1x4x3x3xf32>
// CHECK:         nn.max_pool %{{.*}} {{.*}} : (tensor<1x4x8x8x!quant.uniform<i8:f32, 0.5:-3>>) -> tensor<1x4x4x4x!quant.uniform<i8:f32, 0.5:-3>>

func.func @data_movement(%x: tensor<1x4x2x3xf32>, %y: tensor<1x2x2x3xf32>, %q: tensor<1x4x1x1x!quant.uniform<i8:f32, 0.5:-3>>) -> (tensor<1x24xf32>, tensor<4x6xf32>, tensor<1x2x3x4xf32>, tensor<1x6x2x3xf32>, tensor<1x4x4x5xf32>, tensor<1x4x!quant.uniform<i8:f32, 0.5:-3>>) {
  %0 = nn.flatten %x {axis = 1 : i64} : (tensor<1x4x2x3xf32>) -> tensor<1x24xf32>
  %1 = nn.reshape %x : (tensor<1x4x2x3xf32>) -> tensor<4x6xf32>
  %2 = nn.transpose %x {perm = array<i64: 0, 2, 3, 1>} : (tensor<1x4x2x3xf32>) -> tensor<1x2x3x4xf32>
  %3 = nn.concat %x, %y {axis = 1 : i64} : (tensor<1x4x2x3xf32>, tensor<1x2x2x3xf32>) -> tensor<1x6x2x3xf32>
  %4 = nn.pad %x {pads = array<i64: 0, 0, 1, 1, 0, 0, 1, 1>, value = 0.000000e+00 : f32} : (tensor<1x4x2x3xf32>) -> tensor<1x4x4x5xf32>
  %5 = nn.flatten %q {axis = 1 : i64} : (tensor<1x4x1x1x!quant.uniform<i8:f32, 0.5:-3>>) -> tensor<1x4x!quant.uniform<i8:f32, 0.5:-3>>
  func.return %0, %1, %2, %3, %4, %5 : tensor<1x24xf32>, tensor<4x6xf32>, tensor<1x2x3x4xf32>, tensor<1x6x2x3xf32>, tensor<1x4x4x5xf32>, tensor<1x4x!quant.uniform<i8:f32, 0.5:-3>>
}

// CHECK-LABEL: func.func @data_movement(
// CHECK:         nn.flatten %{{.*}} {axis = 1 : i64} : (tensor<1x4x2x3xf32>) -> tensor<1x24xf32>
// CHECK:         nn.reshape %{{.*}} : (tensor<1x4x2x3xf32>) -> tensor<4x6xf32>
// CHECK:         nn.transpose %{{.*}} {perm = array<i64: 0, 2, 3, 1>} : (tensor<1x4x2x3xf32>) -> tensor<1x2x3x4xf32>
// CHECK:         nn.concat %{{.*}}, %{{.*}} {axis = 1 : i64} : (tensor<1x4x2x3xf32>, tensor<1x2x2x3xf32>) -> tensor<1x6x2x3xf32>
// CHECK:         nn.pad %{{.*}} {pads = array<i64: 0, 0, 1, 1, 0, 0, 1, 1>, value = 0.000000e+00 : f32} : (tensor<1x4x2x3xf32>) -> tensor<1x4x4x5xf32>
// CHECK:         nn.flatten %{{.*}} {axis = 1 : i64} : (tensor<1x4x1x1x!quant.uniform<i8:f32, 0.5:-3>>) -> tensor<1x4x!quant.uniform<i8:f32, 0.5:-3>>

// CHECK-LABEL: @flatten_negative_axis
func.func @flatten_negative_axis(%x: tensor<1x4x2x3xf32>) -> tensor<8x3xf32> {
  // CHECK: nn.flatten %{{.*}} {axis = -1 : i64} : (tensor<1x4x2x3xf32>) -> tensor<8x3xf32>
  %y = nn.flatten %x {axis = -1 : i64} : (tensor<1x4x2x3xf32>) -> tensor<8x3xf32>
  func.return %y : tensor<8x3xf32>
}
