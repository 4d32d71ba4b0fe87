// Every quant op and every kind of !quant.uniform type parses and prints back, in the
// custom and in the generic form.
// RUN: tinymlir-opt %s | tinymlir-opt | filecheck %s
// RUN: tinymlir-opt %s --print-op-generic | tinymlir-opt | filecheck %s

func.func @types(%a: tensor<4x!quant.uniform<i8:f32, 0.5:-3>>, %b: tensor<2x3x!quant.uniform<i8:f32:0, {0.1:0, 0.2:0}>>, %c: tensor<4x!quant.uniform<u8:f32, 0.0235:128>>, %d: tensor<2x!quant.uniform<i32:f32:0, {0.125:0, 0.0625:0}>>, %e: tensor<2x!quant.uniform<i16:f32, 0.001:0>>) {
  func.return
}

// CHECK-LABEL: func.func @types(
// CHECK-SAME:      tensor<4x!quant.uniform<i8:f32, 0.5:-3>>
// CHECK-SAME:      tensor<2x3x!quant.uniform<i8:f32:0, {0.1:0, 0.2:0}>>
// CHECK-SAME:      tensor<4x!quant.uniform<u8:f32, 0.0235:128>>
// CHECK-SAME:      tensor<2x!quant.uniform<i32:f32:0, {0.125:0, 0.0625:0}>>
// CHECK-SAME:      tensor<2x!quant.uniform<i16:f32, 0.001:0>>

func.func @constants() -> (tensor<2x3x!quant.uniform<i8:f32:0, {0.1:0, 0.2:0}>>, tensor<3x!quant.uniform<u8:f32, 0.5:128>>, tensor<2x!quant.uniform<i32:f32, 0.125:0>>) {
  %0 = quant.constant dense<[[1, -2, 3], [4, 5, -128]]> : tensor<2x3xi8> -> tensor<2x3x!quant.uniform<i8:f32:0, {0.1:0, 0.2:0}>>
  %1 = quant.constant dense<[0, -1, 7]> : tensor<3xi8> -> tensor<3x!quant.uniform<u8:f32, 0.5:128>>
  %2 = quant.constant dense<[1000, -1000]> : tensor<2xi32> -> tensor<2x!quant.uniform<i32:f32, 0.125:0>>
  func.return %0, %1, %2 : tensor<2x3x!quant.uniform<i8:f32:0, {0.1:0, 0.2:0}>>, tensor<3x!quant.uniform<u8:f32, 0.5:128>>, tensor<2x!quant.uniform<i32:f32, 0.125:0>>
}

// CHECK-LABEL: func.func @constants(
// CHECK:         quant.constant dense<{{\[}}[1, -2, 3], [4, 5, -128]]> : tensor<2x3xi8> -> tensor<2x3x!quant.uniform<i8:f32:0, {0.1:0, 0.2:0}>>
// CHECK:         quant.constant dense<[0, -1, 7]> : tensor<3xi8> -> tensor<3x!quant.uniform<u8:f32, 0.5:128>>
// CHECK:         quant.constant dense<[1000, -1000]> : tensor<2xi32> -> tensor<2x!quant.uniform<i32:f32, 0.125:0>>

func.func @conversions(%x: tensor<1x4xf32>) -> tensor<1x4xf32> {
  %0 = quant.quantize %x : tensor<1x4xf32> -> tensor<1x4x!quant.uniform<i8:f32, 0.5:-3>>
  %1 = quant.requantize %0 : tensor<1x4x!quant.uniform<i8:f32, 0.5:-3>> -> tensor<1x4x!quant.uniform<u8:f32, 0.25:128>>
  %2 = quant.dequantize %1 : tensor<1x4x!quant.uniform<u8:f32, 0.25:128>> -> tensor<1x4xf32>
  func.return %2 : tensor<1x4xf32>
}

// CHECK-LABEL: func.func @conversions(
// CHECK-SAME:      %[[X:.*]]: tensor<1x4xf32>)
// CHECK:         %[[Q:.*]] = quant.quantize %[[X]] : tensor<1x4xf32> -> tensor<1x4x!quant.uniform<i8:f32, 0.5:-3>>
// CHECK:         %[[R:.*]] = quant.requantize %[[Q]] : tensor<1x4x!quant.uniform<i8:f32, 0.5:-3>> -> tensor<1x4x!quant.uniform<u8:f32, 0.25:128>>
// CHECK:         quant.dequantize %[[R]] : tensor<1x4x!quant.uniform<u8:f32, 0.25:128>> -> tensor<1x4xf32>

func.func @conv2d(%x: tensor<1x3x8x8x!quant.uniform<i8:f32, 0.5:-3>>, %w: tensor<2x3x3x3x!quant.uniform<i8:f32:0, {0.25:0, 0.125:0}>>, %b: tensor<2x!quant.uniform<i32:f32:0, {0.125:0, 0.0625:0}>>) -> tensor<1x2x4x4x!quant.uniform<i8:f32, 0.1:-128>> {
  %0 = quant.conv2d %x, %w, %b {strides = array<i64: 2, 2>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64, act_min = -128 : i32, act_max = -68 : i32} : (tensor<1x3x8x8x!quant.uniform<i8:f32, 0.5:-3>>, tensor<2x3x3x3x!quant.uniform<i8:f32:0, {0.25:0, 0.125:0}>>, tensor<2x!quant.uniform<i32:f32:0, {0.125:0, 0.0625:0}>>) -> tensor<1x2x4x4x!quant.uniform<i8:f32, 0.1:-128>>
  func.return %0 : tensor<1x2x4x4x!quant.uniform<i8:f32, 0.1:-128>>
}

// CHECK-LABEL: func.func @conv2d(
// CHECK-SAME:      %[[X:[^:]*]]: {{[^%]*}}, %[[W:[^:]*]]: {{[^%]*}}, %[[B:[^:]*]]:
// CHECK:         quant.conv2d %[[X]], %[[W]], %[[B]] {strides = array<i64: 2, 2>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64, act_min = -128 : i32, act_max = -68 : i32}
// CHECK-SAME:      -> tensor<1x2x4x4x!quant.uniform<i8:f32, 0.1:-128>>

func.func @depthwise(%x: tensor<1x2x4x4x!quant.uniform<i8:f32, 0.1:-128>>, %w: tensor<2x1x3x3x!quant.uniform<i8:f32, 0.05:0>>) -> tensor<1x2x4x4x!quant.uniform<i8:f32, 0.2:0>> {
  %0 = quant.conv2d %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 2 : i64} : (tensor<1x2x4x4x!quant.uniform<i8:f32, 0.1:-128>>, tensor<2x1x3x3x!quant.uniform<i8:f32, 0.05:0>>) -> tensor<1x2x4x4x!quant.uniform<i8:f32, 0.2:0>>
  func.return %0 : tensor<1x2x4x4x!quant.uniform<i8:f32, 0.2:0>>
}

// CHECK-LABEL: func.func @depthwise(
// CHECK:         quant.conv2d %{{[^,]*}}, %{{[^,]*}} {{.*}}groups = 2 : i64} : (tensor<1x2x4x4x!quant.uniform<i8:f32, 0.1:-128>>, tensor<2x1x3x3x!quant.uniform<i8:f32, 0.05:0>>) -> tensor<1x2x4x4x!quant.uniform<i8:f32, 0.2:0>>

func.func @fully_connected(%x: tensor<1x8x!quant.uniform<i8:f32, 0.5:-3>>, %w: tensor<2x8x!quant.uniform<i8:f32:0, {0.25:0, 0.125:0}>>, %b: tensor<2x!quant.uniform<i32:f32:0, {0.125:0, 0.0625:0}>>) -> tensor<1x2x!quant.uniform<i8:f32, 0.3:5>> {
  %0 = quant.fully_connected %x, %w, %b : (tensor<1x8x!quant.uniform<i8:f32, 0.5:-3>>, tensor<2x8x!quant.uniform<i8:f32:0, {0.25:0, 0.125:0}>>, tensor<2x!quant.uniform<i32:f32:0, {0.125:0, 0.0625:0}>>) -> tensor<1x2x!quant.uniform<i8:f32, 0.3:5>>
  %1 = quant.fully_connected %x, %w {act_min = 5 : i32} : (tensor<1x8x!quant.uniform<i8:f32, 0.5:-3>>, tensor<2x8x!quant.uniform<i8:f32:0, {0.25:0, 0.125:0}>>) -> tensor<1x2x!quant.uniform<i8:f32, 0.3:5>>
  func.return %1 : tensor<1x2x!quant.uniform<i8:f32, 0.3:5>>
}

// CHECK-LABEL: func.func @fully_connected(
// CHECK:         quant.fully_connected %{{.*}}, %{{.*}}, %{{.*}} : (tensor<1x8x!quant.uniform<i8:f32, 0.5:-3>>, tensor<2x8x!quant.uniform<i8:f32:0, {0.25:0, 0.125:0}>>, tensor<2x!quant.uniform<i32:f32:0, {0.125:0, 0.0625:0}>>) -> tensor<1x2x!quant.uniform<i8:f32, 0.3:5>>
// CHECK:         quant.fully_connected %{{[^,]*}}, %{{[^,]*}} {act_min = 5 : i32} :

func.func @add_and_pool(%a: tensor<1x4x2x2x!quant.uniform<i8:f32, 0.5:-3>>, %b: tensor<1x4x2x2x!quant.uniform<i8:f32, 0.25:7>>) -> tensor<1x4x1x1x!quant.uniform<u8:f32, 0.5:0>> {
  %0 = quant.add %a, %b : (tensor<1x4x2x2x!quant.uniform<i8:f32, 0.5:-3>>, tensor<1x4x2x2x!quant.uniform<i8:f32, 0.25:7>>) -> tensor<1x4x2x2x!quant.uniform<u8:f32, 0.75:0>>
  %1 = quant.global_avg_pool %0 : (tensor<1x4x2x2x!quant.uniform<u8:f32, 0.75:0>>) -> tensor<1x4x1x1x!quant.uniform<u8:f32, 0.5:0>>
  func.return %1 : tensor<1x4x1x1x!quant.uniform<u8:f32, 0.5:0>>
}

// CHECK-LABEL: func.func @add_and_pool(
// CHECK:         %[[S:.*]] = quant.add %{{.*}}, %{{.*}} : (tensor<1x4x2x2x!quant.uniform<i8:f32, 0.5:-3>>, tensor<1x4x2x2x!quant.uniform<i8:f32, 0.25:7>>) -> tensor<1x4x2x2x!quant.uniform<u8:f32, 0.75:0>>
// CHECK:         quant.global_avg_pool %[[S]] : (tensor<1x4x2x2x!quant.uniform<u8:f32, 0.75:0>>) -> tensor<1x4x1x1x!quant.uniform<u8:f32, 0.5:0>>

// CHECK-LABEL: @transpose_moves_channel_axis
func.func @transpose_moves_channel_axis(%w: tensor<2x1x3x3x!quant.uniform<i8:f32:0, {0.1:0, 0.2:0}>>) -> tensor<1x3x3x2x!quant.uniform<i8:f32:3, {0.1:0, 0.2:0}>> {
  // CHECK: nn.transpose %{{.*}} {perm = array<i64: 1, 2, 3, 0>}
  %t = nn.transpose %w {perm = array<i64: 1, 2, 3, 0>} : (tensor<2x1x3x3x!quant.uniform<i8:f32:0, {0.1:0, 0.2:0}>>) -> tensor<1x3x3x2x!quant.uniform<i8:f32:3, {0.1:0, 0.2:0}>>
  func.return %t : tensor<1x3x3x2x!quant.uniform<i8:f32:3, {0.1:0, 0.2:0}>>
}
